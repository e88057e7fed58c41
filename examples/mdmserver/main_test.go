package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509/pkix"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/custodymdm/custody/mdm"
	"github.com/custodymdm/custody/mdm/mdmtest"
	"github.com/custodymdm/custody/scep"
)

func TestMain(m *testing.M) {
	if os.Getenv("MDMSERVER_RUN_MAIN") == "1" {
		os.Args = append([]string{"mdmserver"}, os.Args[1:]...)
		main()
		return
	}
	os.Exit(m.Run())
}

// The example serves a device from SCEP to its first command.
func TestExampleServesADevice(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	cmd := exec.Command(os.Args[0], "-listen", addr, "-data", t.TempDir())
	cmd.Env = append(os.Environ(), "MDMSERVER_RUN_MAIN=1")
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	printed := map[string]string{}
	sc := bufio.NewScanner(stdout)
	for len(printed) < 3 && sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 3 {
			printed[f[0]+" "+f[1]] = f[2]
		} else if len(f) == 2 {
			printed[f[0]] = f[1]
		}
	}
	scepURL, mdmURL, challenge := printed["SCEP URL"], printed["MDM URL"], printed["challenge"]
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	client := &scep.Client{URL: scepURL}
	var err error
	for range 50 { // until the server listens
		if _, err = client.GetCACaps(ctx); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	key, _ := rsa.GenerateKey(rand.Reader, 2048)
	csr, _ := scep.NewCSR(key, pkix.Name{CommonName: "example device"}, challenge)
	cert, err := client.Enroll(ctx, key, csr)
	if err != nil {
		t.Fatalf("SCEP with the printed challenge: %v", err)
	}
	d := mdmtest.NewDevice(cert, key)
	d.ServerURL, d.Topic = mdmURL, "com.apple.mgmt.External.example"
	if err := d.Authenticate(ctx); err != nil {
		t.Fatal(err)
	}
	if err := d.TokenUpdate(ctx); err != nil {
		t.Fatal(err)
	}
	done, err := d.Poll(ctx)
	if err != nil || len(done) != 1 {
		t.Fatalf("Poll: %d commands, %v", len(done), err)
	}
	if _, ok := done[0].Command.(*mdm.DeviceInformation); !ok {
		t.Errorf("first command %T, want the DeviceInformation the example queues", done[0].Command)
	}
}
