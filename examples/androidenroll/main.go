// Command androidenroll enrols one Android device with package zerotouch
// alone: it puts a policy in an Android Management API enterprise, mints a
// one-time enrollment token, prints the QR payload to scan (and the link
// for a personal device), and waits until a device has enrolled with the
// token.
//
//	go run ./examples/androidenroll -enterprise enterprises/LC... -credentials sa.json
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"time"

	am "google.golang.org/api/androidmanagement/v1"
	"google.golang.org/api/option"

	"github.com/custodymdm/custody/zerotouch"
)

func main() {
	enterprise := flag.String("enterprise", "", "the enterprise (enterprises/ID)")
	credentials := flag.String("credentials", "", "a service-account JSON key")
	endpoint := flag.String("endpoint", "", "call this URL instead of Google's (a fake)")
	wait := flag.Duration("wait", 10*time.Minute, "how long to wait for the device")
	flag.Parse()
	if *enterprise == "" {
		log.Fatal("give -enterprise enterprises/ID")
	}
	var opts []option.ClientOption
	if *endpoint != "" {
		opts = append(opts, option.WithEndpoint(*endpoint+"/"), option.WithoutAuthentication())
	} else {
		opts = append(opts, option.WithCredentialsFile(*credentials), option.WithScopes(zerotouch.ManagementScope))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	m, err := zerotouch.NewManagement(ctx, *enterprise, opts...)
	if err != nil {
		log.Fatal(err)
	}
	if _, err := m.PutPolicy(ctx, "example", &am.Policy{
		PasswordRequirements: &am.PasswordRequirements{PasswordMinimumLength: 6, PasswordQuality: "NUMERIC"},
	}); err != nil {
		log.Fatal(err)
	}
	tok, err := m.CreateToken(ctx, zerotouch.TokenSpec{PolicyID: "example", Duration: *wait, OneTime: true,
		PersonalUsage: zerotouch.PersonalUsageDisallowed, AdditionalData: "androidenroll example"})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("QR payload: %s\n", zerotouch.QRPayload(tok.Value))
	fmt.Printf("link: %s\n", zerotouch.EnrollmentLink(tok.Value))

	deadline := time.Now().Add(*wait)
	for time.Now().Before(deadline) {
		var found *am.Device
		err := m.Devices(ctx, 100, func(d *am.Device) bool {
			if d.EnrollmentTokenName == tok.Name {
				found = d
				return false
			}
			return true
		})
		if err != nil {
			log.Fatal(err)
		}
		if found != nil {
			serial := ""
			if found.HardwareInfo != nil {
				serial = found.HardwareInfo.SerialNumber
			}
			fmt.Printf("enrolled: %s serial %s, %s, policy %s\n", found.Name, serial, found.Ownership, found.PolicyName)
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
	log.Fatal("no device enrolled in time")
}
