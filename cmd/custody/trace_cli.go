package main

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/custodymdm/custody/enroll"
)

func traceCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "trace SERIAL|ENROLLMENT-ID",
		Short: "Print the identity chain of a device",
		Long: `Print the identity chain of a device, link by link: its pre-enrollment
record, the enrollment link (token) it used, the SCEP challenge the link
minted, the identity certificate the challenge authorised (and its
renewals), its MDM enrollment, the commands queued for it and its results,
and the record's history (admission, enrollment, assignments, wipe request
and acknowledgement, certificate revocation). Each link was stored when its
step happened.`,
		Args: cobra.ExactArgs(1),
	}
	client := addAPIFlags(cmd)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.RunE = withClient(client, func(cmd *cobra.Command, c *apiClient, args []string) error {
		var tr enroll.Trace
		if err := c.call(cmd, http.MethodGet, "/api/v1/trace/"+url.PathEscape(args[0]), nil, &tr); err != nil {
			return err
		}
		if asJSON {
			return printJSON(cmd, tr)
		}
		printTrace(cmd.OutOrStdout(), &tr)
		return nil
	})
	return cmd
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format("2006-01-02 15:04:05")
}

func short(s string) string {
	if len(s) > 16 {
		return s[:16] + "…"
	}
	return s
}

// printTrace writes a trace as text, one section per link.
func printTrace(w io.Writer, tr *enroll.Trace) {
	r := tr.Record
	fmt.Fprintf(w, "record      %s  %s %s  status %s\n", r.Serial, r.Platform, r.Ownership, r.Status)
	fmt.Fprintf(w, "            source %s, created %s, updated %s\n", r.Source, stamp(r.CreatedAt), stamp(r.UpdatedAt))
	if r.UserEmail != "" {
		fmt.Fprintf(w, "            user %s <%s>\n", r.UserName, r.UserEmail)
	}
	if len(r.Groups) > 0 || tr.User != nil && len(tr.User.Groups) > 0 {
		groups := append([]string(nil), r.Groups...)
		if tr.User != nil {
			for _, g := range tr.User.Groups {
				groups = append(groups, g+" (user)")
			}
		}
		fmt.Fprintf(w, "            groups %s\n", strings.Join(groups, ", "))
	}
	if t := tr.Token; t != nil {
		fmt.Fprintf(w, "link        token %s for %s  minted %s  expires %s  used %s\n",
			t.ID, orDash(t.For), stamp(t.CreatedAt), stamp(t.ExpiresAt), stamp(t.UsedAt))
	} else {
		fmt.Fprintln(w, "link        - (no enrollment link recorded)")
	}
	if ch := tr.Challenge; ch != nil {
		fmt.Fprintf(w, "challenge   %s  minted %s  used %s  by cert %s\n", ch.ID, stamp(ch.CreatedAt), stamp(ch.UsedAt), short(ch.CertFingerprint))
	} else {
		fmt.Fprintln(w, "challenge   -")
	}
	for i, c := range tr.Certs {
		label := "cert"
		if i > 0 {
			label = "renewal"
		}
		revoked := "not revoked"
		if c.Revoked() {
			revoked = "revoked " + stamp(c.RevokedAt)
		}
		fmt.Fprintf(w, "%-11s serial %s  sha256 %s  issued %s  not after %s  %s\n", label, c.Serial, c.Fingerprint, stamp(c.IssuedAt), stamp(c.NotAfter), revoked)
	}
	if len(tr.Certs) == 0 {
		fmt.Fprintln(w, "cert        -")
	}
	if e := tr.Enrollment; e != nil {
		state := "disabled"
		if e.Enabled {
			state = "enabled"
		}
		fmt.Fprintf(w, "enrollment  %s  %s  authenticated %s  token update %s  last seen %s\n",
			e.ID, state, stamp(e.AuthenticAt), stamp(e.TokenUpdateAt), stamp(e.LastSeenAt))
		if !e.WipedAt.IsZero() {
			fmt.Fprintf(w, "            wiped %s\n", stamp(e.WipedAt))
		}
	} else {
		fmt.Fprintln(w, "enrollment  -")
	}
	if len(tr.Results)+len(tr.Queue) > 0 {
		fmt.Fprintln(w, "commands")
		for _, res := range tr.Results {
			fmt.Fprintf(w, "  %s  %-24s %s  %s\n", stamp(res.ReceivedAt), res.RequestType, res.CommandUUID, res.Status)
		}
		for _, q := range tr.Queue {
			state := "queued"
			if q.NotNow {
				state = "queued (NotNow)"
			}
			fmt.Fprintf(w, "  %s  %-24s %s  %s\n", stamp(q.EnqueuedAt), q.RequestType, q.UUID, state)
		}
	}
	fmt.Fprintln(w, "history")
	for _, e := range r.History {
		fmt.Fprintf(w, "  %s  %-15s%s\n", stamp(e.At), e.Step, eventDetail(e))
	}
}

func eventDetail(e enroll.Event) string {
	var parts []string
	add := func(k, v string) {
		if v != "" {
			parts = append(parts, k+" "+v)
		}
	}
	add("enrollment", e.Enrollment)
	add("token", e.Token)
	add("cert", short(e.Cert))
	add("assignment", e.Assignment)
	add("command", e.Command)
	if e.Note != "" {
		parts = append(parts, e.Note)
	}
	return strings.Join(parts, "  ")
}
