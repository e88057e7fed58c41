package main

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/custodymdm/custody/enroll/campaign"
)

func mailCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "mail", Short: "The organisation's outgoing mail server (SMTP)"}
	client := addAPIFlags(cmd)
	var req mailRequest
	var passwordFile, caFile string
	set := &cobra.Command{
		Use:   "set --host H --port P --tls none|starttls|tls --from ADDR [--user U --password-file F] [--ca-file F]",
		Short: "Store the SMTP settings (the password is encrypted at rest)",
		Args:  cobra.NoArgs,
		RunE: withClient(client, func(cmd *cobra.Command, c *apiClient, _ []string) error {
			if passwordFile != "" {
				p, err := os.ReadFile(passwordFile)
				if err != nil {
					return err
				}
				req.Password = strings.TrimRight(string(p), "\r\n")
			} else if req.Username != "" {
				return errors.New("--user needs --password-file")
			}
			if caFile != "" {
				ca, err := os.ReadFile(caFile)
				if err != nil {
					return err
				}
				req.CAPEM = string(ca)
			}
			var st mailJSON
			if err := c.call(cmd, http.MethodPut, "/api/v1/mail", req, &st); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "mail through %s:%d (%s) from %s\n", st.Host, st.Port, st.TLS, st.From)
			return nil
		}),
	}
	f := set.Flags()
	f.StringVar(&req.Host, "host", "", "SMTP server host name")
	f.IntVar(&req.Port, "port", 587, "SMTP server port")
	f.StringVar(&req.TLS, "tls", "starttls", "none, starttls or tls (implicit, port 465)")
	f.StringVar(&req.Username, "user", "", "SMTP user")
	f.StringVar(&passwordFile, "password-file", "", "file holding the SMTP password")
	f.StringVar(&req.From, "from", "", "sender address")
	f.StringVar(&req.FromName, "from-name", "", "sender name")
	f.StringVar(&caFile, "ca-file", "", "PEM CA to trust for the server's certificate")
	f.Float64Var(&req.Rate, "rate", 0, "most messages per second (0: no limit); what the server or provider allows")
	f.IntVar(&req.PerConnection, "per-connection", campaign.DefaultPerConnection, "messages sent over one SMTP session before reconnecting")

	var tr mailTestRequest
	test := &cobra.Command{
		Use:   "test --to ADDR [--subject S] [--message M]",
		Short: "Send a test mail; on failure print the server's reply",
		Args:  cobra.NoArgs,
		RunE: withClient(client, func(cmd *cobra.Command, c *apiClient, _ []string) error {
			if err := c.call(cmd, http.MethodPost, "/api/v1/mail/test", tr, nil); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "test mail sent to %s\n", tr.To)
			return nil
		}),
	}
	test.Flags().StringVar(&tr.To, "to", "", "recipient")
	test.Flags().StringVar(&tr.Subject, "subject", "", "subject")
	test.Flags().StringVar(&tr.Message, "message", "", "text")
	show := &cobra.Command{
		Use:   "show",
		Short: "Show the SMTP settings (not the password)",
		Args:  cobra.NoArgs,
		RunE: withClient(client, func(cmd *cobra.Command, c *apiClient, _ []string) error {
			var st mailJSON
			if err := c.call(cmd, http.MethodGet, "/api/v1/mail", nil, &st); err != nil {
				return err
			}
			return printJSON(cmd, st)
		}),
	}
	cmd.AddCommand(set, test, show)
	return cmd
}
