// Command adesync syncs the devices of an Apple Business Manager (ADE)
// server with package dep alone: it authenticates with a server token,
// fetches every device, then syncs changes, printing each device as a line
// of JSON and keeping its cursor in a file so the next run carries on where
// this one stopped.
//
//	go run ./examples/adesync -token token.json [-base-url URL] [-cursor adesync.cursor] [-watch 5m]
//
// The token is the JSON Apple's .p7m decrypts to (consumer_key,
// consumer_secret, access_token, access_secret...); custody dep keypair and
// dep.DecryptToken produce it from the .p7m.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"time"

	"github.com/custodymdm/custody/dep"
)

// fileCursors keeps the cursor in a JSON file.
type fileCursors string

func (f fileCursors) Cursor(_ context.Context, _ string) (*dep.Cursor, error) {
	var c dep.Cursor
	data, err := os.ReadFile(string(f))
	if errors.Is(err, os.ErrNotExist) {
		return &c, nil
	}
	if err != nil {
		return nil, err
	}
	return &c, json.Unmarshal(data, &c)
}

func (f fileCursors) PutCursor(_ context.Context, _ string, c *dep.Cursor) error {
	data, err := json.Marshal(c)
	if err != nil {
		return err
	}
	tmp := string(f) + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, string(f))
}

func main() {
	tokenFile := flag.String("token", "token.json", "the decrypted server token (JSON)")
	baseURL := flag.String("base-url", dep.DefaultBaseURL, "the device assignment API")
	cursorFile := flag.String("cursor", "adesync.cursor", "where the cursor is kept between runs")
	watch := flag.Duration("watch", 0, "keep syncing at this interval (0: one round)")
	flag.Parse()

	data, err := os.ReadFile(*tokenFile)
	if err != nil {
		log.Fatal(err)
	}
	tokens, err := dep.ParseToken(data)
	if err != nil {
		log.Fatal(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	client := dep.NewClient(*tokens, dep.Options{BaseURL: *baseURL})
	acct, err := client.Account(ctx)
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("server %q of %s", acct.ServerName, acct.OrgName)

	out := json.NewEncoder(os.Stdout)
	s := &dep.Syncer{
		Name: acct.ServerUUID, Client: client, Cursors: fileCursors(*cursorFile),
		Handle: func(_ context.Context, _ string, devices []dep.Device) error {
			for _, d := range devices {
				if err := out.Encode(d); err != nil {
					return err
				}
			}
			return nil
		},
	}
	for {
		st, err := s.Sync(ctx, false)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Fprintf(os.Stderr, "synced: %d fetched, %d added, %d modified, %d deleted\n", st.Fetched, st.Added, st.Modified, st.Deleted)
		if *watch <= 0 {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(*watch):
		}
	}
}
