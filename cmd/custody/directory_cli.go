package main

import (
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/custodymdm/custody/enroll/directory"
)

func scimCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "scim", Short: "The SCIM 2.0 service provider identity providers push users and groups to (/scim/v2)"}
	token := &cobra.Command{Use: "token", Short: "Bearer tokens of identity providers (stored hashed, revocable)"}
	client := addAPIFlags(cmd)
	var name string
	newTok := &cobra.Command{
		Use:   "new [--name N]",
		Short: "Mint a token and print it (it is shown once)",
		Args:  cobra.NoArgs,
		RunE: withClient(client, func(cmd *cobra.Command, c *apiClient, _ []string) error {
			var t scimTokenJSON
			if err := c.call(cmd, http.MethodPost, "/api/v1/scim/tokens", map[string]string{"name": name}, &t); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), t.Token)
			fmt.Fprintf(cmd.ErrOrStderr(), "token %s (%s): give the identity provider the URL %s/scim/v2 and this token; it is not shown again\n", t.ID, t.Name, c.url)
			return nil
		}),
	}
	newTok.Flags().StringVar(&name, "name", "identity-provider", "what the token is for (okta, entra...)")
	list := &cobra.Command{
		Use:   "list",
		Short: "List the tokens (names and ids, never values)",
		Args:  cobra.NoArgs,
		RunE: withClient(client, func(cmd *cobra.Command, c *apiClient, _ []string) error {
			var ts []scimTokenJSON
			if err := c.call(cmd, http.MethodGet, "/api/v1/scim/tokens", nil, &ts); err != nil {
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tNAME\tCREATED")
			for _, t := range ts {
				fmt.Fprintf(tw, "%s\t%s\t%s\n", t.ID, t.Name, stamp(t.Created))
			}
			return tw.Flush()
		}),
	}
	revoke := &cobra.Command{
		Use:   "revoke ID|NAME",
		Short: "Revoke a token: the identity provider using it gets 401 from then on",
		Args:  cobra.ExactArgs(1),
		RunE: withClient(client, func(cmd *cobra.Command, c *apiClient, args []string) error {
			var t scimTokenJSON
			if err := c.call(cmd, http.MethodDelete, "/api/v1/scim/tokens/"+url.PathEscape(args[0]), nil, &t); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "revoked token %s (%s)\n", t.ID, t.Name)
			return nil
		}),
	}
	token.AddCommand(newTok, list, revoke)
	cmd.AddCommand(token)
	return cmd
}

func directoryCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "directory", Short: "How identity providers' users and groups are mirrored, and offboarding"}
	client := addAPIFlags(cmd)
	var scope string
	var grace time.Duration
	var dryRun, offboarding bool
	settings := &cobra.Command{
		Use:   "settings [--scope G1,G2|all] [--grace 4h] [--dry-run=BOOL] [--offboarding=BOOL]",
		Short: "Show or change the sync scope and the offboarding settings",
		Long: `Show or change the directory settings.

--scope limits mirroring to the members of these groups (group keys like
scim:ID, or display names); "all" mirrors everyone. --grace is how long
offboarding waits after a user is deactivated before acting on devices
(cancel with custody offboarding cancel meanwhile). --dry-run plans
offboardings without acting. --offboarding=false turns offboarding off.`,
		Args: cobra.NoArgs,
		RunE: withClient(client, func(cmd *cobra.Command, c *apiClient, _ []string) error {
			req := map[string]any{}
			f := cmd.Flags()
			if f.Changed("scope") {
				groups := []string{}
				if scope != "all" {
					for _, g := range strings.Split(scope, ",") {
						groups = append(groups, strings.TrimSpace(g))
					}
				}
				req["scope"] = groups
			}
			if f.Changed("grace") {
				req["grace"] = grace.String()
			}
			if f.Changed("dry-run") {
				req["dry_run"] = dryRun
			}
			if f.Changed("offboarding") {
				req["disabled"] = !offboarding
			}
			var st directory.Settings
			method := http.MethodGet
			var body any
			if len(req) > 0 {
				method, body = http.MethodPatch, req
			}
			if err := c.call(cmd, method, "/api/v1/directory/settings", body, &st); err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			sc := "everyone"
			if len(st.Scope) > 0 {
				sc = "members of " + strings.Join(st.Scope, ", ")
			}
			fmt.Fprintf(w, "scope        %s\n", sc)
			fmt.Fprintf(w, "offboarding  %s\n", map[bool]string{true: "off", false: "on"}[st.Disabled])
			fmt.Fprintf(w, "grace        %s\n", time.Duration(st.Grace))
			fmt.Fprintf(w, "dry run      %v\n", st.DryRun)
			return nil
		}),
	}
	f := settings.Flags()
	f.StringVar(&scope, "scope", "", `groups to mirror (comma-separated keys or names), or "all"`)
	f.DurationVar(&grace, "grace", time.Duration(directory.DefaultGrace), "grace period before offboarding acts")
	f.BoolVar(&dryRun, "dry-run", false, "plan offboardings without acting on devices")
	f.BoolVar(&offboarding, "offboarding", true, "offboard users the identity provider deactivates")
	groups := &cobra.Command{
		Use:   "groups",
		Short: "List the mirrored groups: the Custody group key and the provider's current name",
		Args:  cobra.NoArgs,
		RunE: withClient(client, func(cmd *cobra.Command, c *apiClient, _ []string) error {
			var gs []directory.GroupRecord
			if err := c.call(cmd, http.MethodGet, "/api/v1/directory/groups", nil, &gs); err != nil {
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "GROUP\tNAME\tUPDATED")
			for _, g := range gs {
				fmt.Fprintf(tw, "%s\t%s\t%s\n", g.Key, g.Name, stamp(g.UpdatedAt))
			}
			return tw.Flush()
		}),
	}
	var after uint64
	audit := &cobra.Command{
		Use:   "audit [--after SEQ]",
		Short: "Print the audit log: what identity providers, offboarding and administrators did",
		Args:  cobra.NoArgs,
		RunE: withClient(client, func(cmd *cobra.Command, c *apiClient, _ []string) error {
			for seq := after; ; {
				var es []directory.AuditEntry
				if err := c.call(cmd, http.MethodGet, "/api/v1/directory/audit?after="+strconv.FormatUint(seq, 10), nil, &es); err != nil {
					return err
				}
				if len(es) == 0 {
					return nil
				}
				for _, e := range es {
					fmt.Fprintf(cmd.OutOrStdout(), "%6d  %s  %-22s %-24s %s  %s\n", e.Seq, stamp(e.At), e.Action, e.Actor, e.Subject, e.Detail)
				}
				seq = es[len(es)-1].Seq
			}
		}),
	}
	audit.Flags().Uint64Var(&after, "after", 0, "only entries after this sequence number")
	cmd.AddCommand(settings, groups, audit)
	return cmd
}

func offboardingCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "offboarding", Short: "Offboardings of users the identity provider deactivated"}
	client := addAPIFlags(cmd)
	var state string
	list := &cobra.Command{
		Use:   "list [--state pending|done|failed|cancelled|dry-run]",
		Short: "List offboardings",
		Args:  cobra.NoArgs,
		RunE: withClient(client, func(cmd *cobra.Command, c *apiClient, _ []string) error {
			var os []directory.Offboarding
			if err := c.call(cmd, http.MethodGet, "/api/v1/offboardings?state="+url.QueryEscape(state), nil, &os); err != nil {
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tUSER\tSTATE\tDUE\tDEVICES\tEVENT")
			for _, o := range os {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", o.ID, o.Email, o.State, stamp(o.DueAt), actions(o.Devices), o.Event)
			}
			return tw.Flush()
		}),
	}
	list.Flags().StringVar(&state, "state", "", "only offboardings in this state")
	show := &cobra.Command{
		Use:   "show ID",
		Short: "Show an offboarding and what it did to each device",
		Args:  cobra.ExactArgs(1),
		RunE: withClient(client, func(cmd *cobra.Command, c *apiClient, args []string) error {
			var o directory.Offboarding
			if err := c.call(cmd, http.MethodGet, "/api/v1/offboardings/"+url.PathEscape(args[0]), nil, &o); err != nil {
				return err
			}
			return printJSON(cmd, o)
		}),
	}
	var reason string
	cancel := &cobra.Command{
		Use:   "cancel ID [--reason R]",
		Short: "Cancel a pending offboarding: its devices are left alone",
		Args:  cobra.ExactArgs(1),
		RunE: withClient(client, func(cmd *cobra.Command, c *apiClient, args []string) error {
			var o directory.Offboarding
			if err := c.call(cmd, http.MethodPost, "/api/v1/offboardings/"+url.PathEscape(args[0])+"/cancel", map[string]string{"reason": reason}, &o); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "offboarding %s of %s %s\n", o.ID, o.Email, o.Note)
			return nil
		}),
	}
	cancel.Flags().StringVar(&reason, "reason", "", "why (kept in the audit log and the devices' histories)")
	cmd.AddCommand(list, show, cancel)
	return cmd
}

// actions summarises an offboarding's device actions.
func actions(ds []directory.DeviceAction) string {
	if len(ds) == 0 {
		return "-"
	}
	var parts []string
	for _, d := range ds {
		s := d.Serial + ":" + d.Action
		switch {
		case d.Error != "":
			s += "(failed)"
		case !d.Done.IsZero():
			s += "(done)"
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, " ")
}

func googleCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "google", Short: "Google Workspace directory sync (Admin SDK, service account with domain-wide delegation)"}
	client := addAPIFlags(cmd)
	var req googleRequest
	var credentials, groups, orgUnits string
	set := &cobra.Command{
		Use:   "set --credentials KEY.json --subject ADMIN [--groups G1,G2] [--org-units /A,/B] [--every 1h]",
		Short: "Store the sync settings (the key is encrypted at rest)",
		Long: `Store the Google Workspace sync settings.

The service account (its JSON key in --credentials) needs domain-wide
delegation in the Workspace admin console for the scopes
https://www.googleapis.com/auth/admin.directory.user.readonly,
https://www.googleapis.com/auth/admin.directory.group.readonly and
https://www.googleapis.com/auth/admin.directory.group.member.readonly;
--subject is the administrator it acts as. --groups and --org-units limit
the sync to the members of these groups (email addresses) and the users of
these organisational units. Suspended users are offboarded.`,
		Args: cobra.NoArgs,
		RunE: withClient(client, func(cmd *cobra.Command, c *apiClient, _ []string) error {
			key, err := os.ReadFile(credentials)
			if err != nil {
				return err
			}
			req.Credentials = string(key)
			req.Groups, req.OrgUnits = splitList(groups), splitList(orgUnits)
			var st googleStatus
			if err := c.call(cmd, http.MethodPut, "/api/v1/google", req, &st); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "google sync as %s, every %s\n", st.Subject, orDash(st.Every))
			return nil
		}),
	}
	f := set.Flags()
	f.StringVar(&credentials, "credentials", "", "the service account's JSON key file")
	f.StringVar(&req.Subject, "subject", "", "the Workspace administrator the service account acts as")
	f.StringVar(&req.Customer, "customer", "", `the customer ID ("my_customer" when empty)`)
	f.StringVar(&groups, "groups", "", "sync only the members of these groups (comma-separated emails)")
	f.StringVar(&orgUnits, "org-units", "", "sync only the users of these organisational units (comma-separated paths)")
	f.StringVar(&req.Every, "every", "1h", "how often to sync (empty: only with custody google sync)")
	f.StringVar(&req.Endpoint, "endpoint", "", "the Directory API's URL (for tests against a fake)")
	f.MarkHidden("endpoint")
	show := &cobra.Command{
		Use:   "show",
		Short: "Show the sync settings (not the key) and the last sync",
		Args:  cobra.NoArgs,
		RunE: withClient(client, func(cmd *cobra.Command, c *apiClient, _ []string) error {
			var st googleStatus
			if err := c.call(cmd, http.MethodGet, "/api/v1/google", nil, &st); err != nil {
				return err
			}
			return printJSON(cmd, st)
		}),
	}
	sync := &cobra.Command{
		Use:   "sync",
		Short: "Sync now and print what changed",
		Args:  cobra.NoArgs,
		RunE: withClient(client, func(cmd *cobra.Command, c *apiClient, _ []string) error {
			var st googleStatus
			if err := c.call(cmd, http.MethodPost, "/api/v1/google/sync", nil, &st); err != nil {
				return err
			}
			s := st.Stats
			fmt.Fprintf(cmd.OutOrStdout(), "%d users, %d groups in %s: %d created, %d updated, %d unchanged, %d deactivated, %d reactivated, %d left the scope, %d devices changed\n",
				st.Users, st.GroupCount, st.Took, s.Created, s.Updated, s.Unchanged, s.Deactivated, s.Reactivated, s.Unlinked, s.Devices)
			return nil
		}),
	}
	cmd.AddCommand(set, show, sync)
	return cmd
}

func splitList(s string) []string {
	var out []string
	for _, x := range strings.Split(s, ",") {
		if x = strings.TrimSpace(x); x != "" {
			out = append(out, x)
		}
	}
	return out
}
