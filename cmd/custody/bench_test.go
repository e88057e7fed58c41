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
// concurrent clients (scep.Client), each sending PKCSReqs with RSA-2048 keys
// and distinct subjects. custody mints one challenge per request, as in
// production; Debian's scepserver has one static challenge. Only issued
// certificates count; refusals are reported as refused/op (scepserver's file
// depot races on its serial file under concurrent requests and refuses some).
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
			benchIssuance(b, url+"/scep", keys[:clients], func(i int) string { return challenges[i] })
		})
	}
	for _, clients := range []int{1, 8} {
		b.Run(fmt.Sprintf("server=scepserver/clients=%d", clients), func(b *testing.B) {
			peertest.Need(b, "scepserver", "scep")
			url, _ := peertest.ScepServer(b, "benchsecret")
			benchIssuance(b, url, keys[:clients], func(int) string { return "benchsecret" })
		})
	}
}

func mintChallengeB(dir string) (string, error) {
	var out, errOut bytes.Buffer
	err := run(context.Background(), []string{"challenge", "--data", dir}, &out, &errOut)
	return strings.TrimSpace(out.String()), err
}

func benchIssuance(b *testing.B, url string, keys []*rsa.PrivateKey, challenge func(i int) string) {
	client := &scep.Client{URL: url}
	if _, err := client.GetCACaps(context.Background()); err != nil {
		b.Fatal(err)
	}
	var next, issued, refused atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	for w := range keys {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= b.N {
					return
				}
				csr, err := scep.NewCSR(keys[w], pkix.Name{CommonName: fmt.Sprintf("bench-%d-%d", w, i)}, challenge(i))
				if err != nil {
					b.Error(err)
					return
				}
				var fe *scep.FailureError
				switch _, err = client.Enroll(context.Background(), keys[w], csr); {
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
