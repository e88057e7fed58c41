// Command mdmserver is a small MDM server built from Custody's packages: a
// SCEP CA issuing device identities, the Apple MDM check-in and command
// endpoints, and bbolt storage. It prints a one-time enrollment challenge
// and queues a DeviceInformation command for each device that enrols.
//
//	go run ./examples/mdmserver -listen 127.0.0.1:9400 -data /tmp/mdmserver
package main

import (
	"context"
	"crypto/x509"
	"flag"
	"fmt"
	"log"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/custodymdm/custody/mdm"
	"github.com/custodymdm/custody/scep"
	"github.com/custodymdm/custody/storage/bolt"
)

// queueOnEnrol queues DeviceInformation when a device sends TokenUpdate.
type queueOnEnrol struct{ store mdm.Store }

func (q queueOnEnrol) HandleEvent(ctx context.Context, e *mdm.Event) {
	switch {
	case e.Type == "checkin" && e.MessageType == "TokenUpdate":
		uuid := fmt.Sprintf("info-%d", time.Now().UnixNano())
		payload, err := mdm.MarshalCommand(uuid, &mdm.DeviceInformation{Queries: []string{"SerialNumber", "OSVersion"}})
		if err == nil {
			err = q.store.Enqueue(ctx, []string{e.EnrollmentID}, &mdm.QueuedCommand{
				UUID: uuid, RequestType: "DeviceInformation", Payload: payload, EnqueuedAt: time.Now(),
			})
		}
		if err != nil {
			log.Printf("queue DeviceInformation for %s: %v", e.EnrollmentID, err)
		}
	case e.Type == "result":
		log.Printf("%s answered %s: %s", e.EnrollmentID, e.Result.RequestType, e.Result.Status)
	}
}

func main() {
	listen := flag.String("listen", "127.0.0.1:9400", "address to listen on")
	dataDir := flag.String("data", "mdmserver-data", "where the database lives")
	flag.Parse()

	if err := os.MkdirAll(*dataDir, 0o700); err != nil {
		log.Fatal(err)
	}
	db, err := bolt.Open(filepath.Join(*dataDir, "mdm.db"), bolt.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()

	// A fresh CA each start keeps the example short; a real server keeps
	// its CA (see cmd/custody).
	ca, err := scep.NewCA("Example MDM CA", 2048, 10*365*24*time.Hour)
	if err != nil {
		log.Fatal(err)
	}
	certs := db.SCEP()
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)

	service := &mdm.Service{
		Store:  db.MDM(),
		Auth:   &mdm.Authenticator{Roots: roots, IsRevoked: certs.Revoked},
		Events: queueOnEnrol{store: db.MDM()},
		Logger: slog.Default(),
	}
	mux := http.NewServeMux()
	mux.Handle("/scep", &scep.Server{Store: certs, Signer: ca, RACert: ca.Cert, RAKey: ca.Key})
	mux.Handle("/mdm", service)

	_, challenge, err := scep.NewChallenge(context.Background(), certs, 24*time.Hour, "example", "")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("SCEP URL   http://%s/scep\nchallenge  %s\nMDM URL    http://%s/mdm\n", *listen, challenge, *listen)
	log.Fatal(http.ListenAndServe(*listen, mux))
}
