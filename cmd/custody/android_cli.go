package main

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/skip2/go-qrcode"
	"github.com/spf13/cobra"

	"github.com/custodymdm/custody/enroll"
)

func androidCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "android",
		Short: "Android devices through the Android Management API",
		Long: `Android devices through the Android Management API.

  custody android bind --enterprise enterprises/LC... --credentials sa.json
  custody android token --serial S --png s.png     a QR code for the device to scan
  custody android sync                             policies put, devices matched to records

Point the enterprise's Pub/Sub push subscription at the push URL bind
prints, so enrollments, status reports and command results arrive at once.`,
	}
	client := addAPIFlags(cmd)

	var req androidBindRequest
	bind := &cobra.Command{
		Use:   "bind (--enterprise enterprises/ID | --project PROJECT)",
		Short: "Bind to an Android Management API enterprise (or sign one up)",
		Args:  cobra.NoArgs,
		RunE: withClient(client, func(cmd *cobra.Command, c *apiClient, _ []string) error {
			var st androidStatusJSON
			if err := c.call(cmd, http.MethodPost, "/api/v1/android/bind", req, &st); err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if st.SignupURL != "" {
				fmt.Fprintf(out, "open this URL to sign up the enterprise; Google then calls this server back:\n%s\n", st.SignupURL)
			} else {
				fmt.Fprintf(out, "bound to %s (%s); %d policies put\n", st.Enterprise, st.DisplayName, st.Policies)
			}
			fmt.Fprintf(out, "Pub/Sub push URL: %s\n", st.PushURL)
			return nil
		}),
	}
	bind.Flags().StringVar(&req.Enterprise, "enterprise", "", "an existing enterprise (enterprises/ID)")
	bind.Flags().StringVar(&req.ProjectID, "project", "", "the Google Cloud project, to sign up a new enterprise")
	bind.Flags().StringVar(&req.CredentialsFile, "credentials", "", "service-account JSON key file (on the server)")
	bind.Flags().StringVar(&req.Endpoint, "endpoint", "", "call this URL instead of Google's (a fake or a proxy)")
	bind.Flags().StringVar(&req.Customer, "customer", "", "the zero-touch customer (customers/ID)")

	var serial, email, png string
	var ttl time.Duration
	token := &cobra.Command{
		Use:   "token (--serial S | --email E) [--png FILE]",
		Short: "Mint an enrollment token for a record or a user: its QR code and link",
		Args:  cobra.NoArgs,
		RunE: withClient(client, func(cmd *cobra.Command, c *apiClient, _ []string) error {
			r := androidTokenRequest{Serial: serial, Email: email}
			if ttl != 0 {
				r.TTL = ttl.String()
			}
			var t enroll.AndroidToken
			if err := c.call(cmd, http.MethodPost, "/api/v1/android/tokens", r, &t); err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "token %s for %s (policy %s), valid until %s\n", t.Name, t.For, t.Policy, t.Expires.Local().Format(time.RFC3339))
			fmt.Fprintf(out, "enrollment link: %s\n", t.Link)
			fmt.Fprintf(out, "QR payload: %s\n", t.QR)
			if png != "" {
				if err := qrcode.WriteFile(string(t.QR), qrcode.Medium, 512, png); err != nil {
					return fmt.Errorf("writing the QR code: %w", err)
				}
				fmt.Fprintf(out, "QR code written to %s\n", png)
			}
			return nil
		}),
	}
	token.Flags().StringVar(&serial, "serial", "", "a pre-enrolled Android record's serial number")
	token.Flags().StringVar(&email, "email", "", "a user, for a personal device's work profile")
	token.Flags().StringVar(&png, "png", "", "write the QR code to this PNG file")
	token.Flags().DurationVar(&ttl, "ttl", 0, "how long the token is valid (default 168h)")

	syncCmd := &cobra.Command{
		Use:   "sync",
		Short: "Put the group policies and match every device to its record",
		Args:  cobra.NoArgs,
		RunE: withClient(client, func(cmd *cobra.Command, c *apiClient, _ []string) error {
			var res map[string]int
			if err := c.call(cmd, http.MethodPost, "/api/v1/android/sync", struct{}{}, &res); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%d policies put; %d devices seen, %d refused and deleted\n", res["policies"], res["devices"], res["refused"])
			return nil
		}),
	}
	cmd.AddCommand(bind, token, syncCmd)
	return cmd
}

func zeroTouchCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "zerotouch",
		Short: "Android zero-touch: configurations applied to devices at purchase",
	}
	client := addAPIFlags(cmd)
	var cfg zeroTouchConfigRequest
	configure := &cobra.Command{
		Use:   "configure --name N --company C",
		Short: "Create the zero-touch configuration devices enrol with at first boot",
		Args:  cobra.NoArgs,
		RunE: withClient(client, func(cmd *cobra.Command, c *apiClient, _ []string) error {
			var res map[string]string
			if err := c.call(cmd, http.MethodPost, "/api/v1/zerotouch/configurations", cfg, &res); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "configuration %s (token %s)\n", res["configuration"], res["token"])
			return nil
		}),
	}
	configure.Flags().StringVar(&cfg.Name, "name", "", "the configuration's name")
	configure.Flags().StringVar(&cfg.Company, "company", "", "the company name users see at setup")
	configure.Flags().StringVar(&cfg.Email, "email", "", "support email shown at setup")
	configure.Flags().StringVar(&cfg.Phone, "phone", "", "support phone shown at setup")
	configure.Flags().StringVar(&cfg.Message, "message", "", "a message shown at setup")
	configure.Flags().BoolVar(&cfg.Default, "default", false, "apply it to newly claimed devices")

	var ap zeroTouchApplyRequest
	apply := &cobra.Command{
		Use:   "apply (--serial S [--manufacturer M] | --imei I)",
		Short: "Apply the configuration to a claimed device (or --remove it)",
		Args:  cobra.NoArgs,
		RunE: withClient(client, func(cmd *cobra.Command, c *apiClient, _ []string) error {
			if ap.Serial == "" && ap.IMEI == "" {
				return errors.New("give --serial or --imei")
			}
			if err := c.call(cmd, http.MethodPost, "/api/v1/zerotouch/apply", ap, nil); err != nil {
				return err
			}
			what := "applied"
			if ap.Remove {
				what = "removed"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "configuration %s\n", what)
			return nil
		}),
	}
	apply.Flags().StringVar(&ap.Serial, "serial", "", "the device's serial number")
	apply.Flags().StringVar(&ap.Manufacturer, "manufacturer", "", "the device's manufacturer (with --serial)")
	apply.Flags().StringVar(&ap.IMEI, "imei", "", "the device's IMEI")
	apply.Flags().StringVar(&ap.Configuration, "configuration", "", "the configuration (default: the one configure made)")
	apply.Flags().BoolVar(&ap.Remove, "remove", false, "remove the device's configuration instead")

	var group string
	syncCmd := &cobra.Command{
		Use:   "sync [--group G]",
		Short: "Turn the customer's zero-touch devices into pre-enrollment records",
		Args:  cobra.NoArgs,
		RunE: withClient(client, func(cmd *cobra.Command, c *apiClient, _ []string) error {
			var res map[string]int
			if err := c.call(cmd, http.MethodPost, "/api/v1/zerotouch/sync", map[string]string{"group": group}, &res); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%d zero-touch devices\n", res["devices"])
			return nil
		}),
	}
	syncCmd.Flags().StringVar(&group, "group", "", "put new records in this group")
	cmd.AddCommand(configure, apply, syncCmd)
	return cmd
}
