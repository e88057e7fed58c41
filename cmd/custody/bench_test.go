package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/custodymdm/custody/internal/peertest"
	"github.com/custodymdm/custody/scep"
)

// BenchmarkSCEPIssuance measures certificates issued per second by a SCEP
// server running as its own process, under the same client load: N
// concurrent clients send PKCSReqs for RSA-2048 keys with distinct
// subjects, and check and decrypt every reply. Requests are built before the
// timer, so the client's signing work does not compete with the server for
// the CPU. custody mints one challenge per request, as in production;
// Debian's scepserver has one static challenge and runs with a 2048-bit CA
// like custody's, and with its default 4096-bit CA. Only issued certificates
// count; refusals are reported as refused/op (scepserver's file depot races
// on its serial file under concurrent requests).
//
//	go test -run '^$' -bench SCEPIssuance -benchtime 400x ./cmd/custody/
func BenchmarkSCEPIssuance(b *testing.B) {
	keys := make([]*rsa.PrivateKey, 8)
	for i := range keys {
		keys[i], _ = rsa.GenerateKey(rand.Reader, 2048)
	}
	for _, clients := range []int{1, 8} {
		b.Run(fmt.Sprintf("server=custody/clients=%d", clients), func(b *testing.B) {
			dir := b.TempDir()
			_, url := serveProcess(b, dir)
			challenges := make([]string, b.N)
			for i := range challenges {
				c, err := mintChallengeB(dir)
				if err != nil {
					b.Fatal(err)
				}
				challenges[i] = c
			}
			benchIssuance(b, url+"/scep", keys, clients, func(i int) string { return challenges[i] })
		})
	}
	// scepserver with a 2048-bit CA like custody's (the same cryptographic
	// work per certificate), and as shipped: `scepserver ca -init` makes a
	// 4096-bit CA.
	for _, caBits := range []int{2048, 4096} {
		for _, clients := range []int{1, 8} {
			b.Run(fmt.Sprintf("server=scepserver-ca%d/clients=%d", caBits, clients), func(b *testing.B) {
				peertest.Need(b, "scepserver", "scep")
				url, _ := peertest.ScepServerKeySize(b, "benchsecret", caBits)
				benchIssuance(b, url, keys, clients, func(int) string { return "benchsecret" })
			})
		}
	}
}

func mintChallengeB(dir string) (string, error) {
	var out, errOut bytes.Buffer
	err := run(context.Background(), []string{"challenge", "--data", dir}, &out, &errOut)
	return strings.TrimSpace(out.String()), err
}

func benchIssuance(b *testing.B, url string, keys []*rsa.PrivateKey, clients int, challenge func(i int) string) {
	ctx := context.Background()
	client := &scep.Client{URL: url}
	reqs := make([]*scep.Request, b.N)
	for i := range reqs {
		k := keys[i%len(keys)]
		csr, err := scep.NewCSR(k, pkix.Name{CommonName: fmt.Sprintf("bench-%d", i)}, challenge(i))
		if err != nil {
			b.Fatal(err)
		}
		if reqs[i], err = client.NewPKCSReq(ctx, k, csr); err != nil {
			b.Fatal(err)
		}
	}
	var next, issued, refused atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	for range clients {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= b.N {
					return
				}
				var fe *scep.FailureError
				switch _, err := client.Send(ctx, reqs[i]); {
				case err == nil:
					issued.Add(1)
				case errors.As(err, &fe):
					refused.Add(1)
				default:
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(issued.Load())/b.Elapsed().Seconds(), "certs/s")
	b.ReportMetric(float64(refused.Load())/float64(b.N), "refused/op")
}
