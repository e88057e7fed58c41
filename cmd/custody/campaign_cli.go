package main

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/custodymdm/custody/enroll/campaign"
)

// parseWhen reads a time as the CLI takes it: RFC 3339, a date (the start
// of that day in UTC, or its end for a deadline), or "+DURATION" from now.
func parseWhen(s string, endOfDay bool) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if d, ok := strings.CutPrefix(s, "+"); ok {
		dur, err := time.ParseDuration(d)
		if err != nil || dur <= 0 {
			return time.Time{}, fmt.Errorf("%q: want +DURATION such as +72h", s)
		}
		return time.Now().Add(dur).UTC().Truncate(time.Second), nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t.UTC(), nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		if endOfDay {
			t = t.Add(24*time.Hour - time.Second)
		}
		return t, nil
	}
	return time.Time{}, fmt.Errorf("%q: want a date (2026-12-04), a time (2026-12-04T17:00:00Z) or +DURATION", s)
}

func ringsCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "rings", Short: "Migration rings: cohorts of users and devices invited together"}
	client := addAPIFlags(cmd)

	var req campaign.Ring
	var csvFile, where, notBefore, deadline string
	create := &cobra.Command{
		Use:   "create NAME [--group G] [--csv FILE [--where COL=VALUE]] [--member REF]... [--deadline T]",
		Short: "Create a ring from a group, a CSV file (or one value of its column) or named members",
		Args:  cobra.ExactArgs(1),
		RunE: withClient(client, func(cmd *cobra.Command, c *apiClient, args []string) error {
			req.Name = args[0]
			if csvFile != "" {
				f, err := os.Open(csvFile)
				if err != nil {
					return err
				}
				members, err := campaign.ReadMembers(f, where)
				f.Close()
				if err != nil {
					return fmt.Errorf("%s: %w", csvFile, err)
				}
				req.Members = append(req.Members, members...)
			} else if where != "" {
				return errors.New("--where goes with --csv")
			}
			var err error
			if req.NotBefore, err = parseWhen(notBefore, false); err != nil {
				return fmt.Errorf("--not-before %w", err)
			}
			if req.Deadline, err = parseWhen(deadline, true); err != nil {
				return fmt.Errorf("--deadline %w", err)
			}
			var out ringJSON
			if err := c.call(cmd, http.MethodPost, "/api/v1/rings", req, &out); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "ring %s: %d targets (devices, and users without one)\n", out.Name, out.Counts.Targets)
			return nil
		}),
	}
	f := create.Flags()
	f.StringVar(&req.Group, "group", "", "every record and user of this group (a directory group synced into Custody is one)")
	f.StringVar(&csvFile, "csv", "", "CSV file whose rows name members by serial number or email")
	f.StringVar(&where, "where", "", "with --csv, only rows whose COLUMN holds VALUE (e.g. ring=2)")
	f.StringSliceVar(&req.Members, "member", nil, "a member, record:SERIAL or user:EMAIL (repeatable)")
	f.StringVar(&notBefore, "not-before", "", "invitations wait until then")
	f.StringVar(&deadline, "deadline", "", "when the ring should have enrolled")
	f.StringVar(&req.Channel, "channel", campaign.ChannelEmail, "email, or webhook (SMS, Teams, Slack through a bridge)")
	f.StringVar(&req.HelpDesk, "help-desk", "", "where users get help, for the templates")
	f.StringVar(&req.OverdueGroup, "overdue-group", "", "after the deadline, members not enrolled join this group")
	f.BoolVar(&req.RemindOverdue, "remind-overdue", false, "after the deadline, send a final reminder to members not enrolled")

	list := &cobra.Command{
		Use:   "list",
		Short: "List rings with their counts",
		Args:  cobra.NoArgs,
		RunE: withClient(client, func(cmd *cobra.Command, c *apiClient, _ []string) error {
			var rings []ringJSON
			if err := c.call(cmd, http.MethodGet, "/api/v1/rings", nil, &rings); err != nil {
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "RING\tTARGETS\tPRE-APPROVED\tINVITED\tFAILED\tENROLLED\tOVERDUE\tDEADLINE\tJOB")
			for _, r := range rings {
				fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t%s\n", r.Name, r.Counts.Targets, r.Counts.PreApproved, r.Counts.Invited,
					r.Counts.Failed, r.Counts.Enrolled, r.Counts.Overdue, stamp(r.Deadline), jobLine(r.LastJob))
			}
			return tw.Flush()
		}),
	}

	var targets string
	var asJSON bool
	show := &cobra.Command{
		Use:   "show NAME [--targets all|not-enrolled|overdue|pre-approved|invited|failed|enrolled] [--json]",
		Short: "Show a ring: schedule, counts, jobs and, with --targets, who stands where",
		Args:  cobra.ExactArgs(1),
		RunE: withClient(client, func(cmd *cobra.Command, c *apiClient, args []string) error {
			path := "/api/v1/rings/" + url.PathEscape(args[0])
			if targets != "" {
				path += "?targets=" + url.QueryEscape(targets)
			}
			var r ringJSON
			if err := c.call(cmd, http.MethodGet, path, nil, &r); err != nil {
				return err
			}
			if asJSON {
				return printJSON(cmd, r)
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "Ring %s\n", r.Name)
			if r.Group != "" {
				fmt.Fprintf(w, "  group:      %s\n", r.Group)
			}
			if len(r.Members) > 0 {
				fmt.Fprintf(w, "  members:    %d named\n", len(r.Members))
			}
			fmt.Fprintf(w, "  channel:    %s\n  not before: %s\n  deadline:   %s\n", r.Channel, stamp(r.NotBefore), stamp(r.Deadline))
			if r.OverdueGroup != "" || r.RemindOverdue {
				fmt.Fprintf(w, "  after the deadline: overdue group %s, final reminder %v (done %s)\n", orDash(r.OverdueGroup), r.RemindOverdue, stamp(r.DeadlineActed))
			}
			printCounts(w, r.Counts)
			if r.LastJob != nil {
				fmt.Fprintf(w, "  last job:   %s\n", jobLine(r.LastJob))
			}
			if targets != "" {
				tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "\nTARGET\tEMAIL\tPLATFORM\tSTATE\tINVITED\tREMINDERS\tERROR")
				for _, t := range r.Targets {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\n", t.Ref, t.Email, orDash(string(t.Platform)), t.State, stamp(t.InvitedAt), t.Reminders, t.Error)
				}
				tw.Flush()
			}
			return nil
		}),
	}
	show.Flags().StringVar(&targets, "targets", "", "list the targets: all, not-enrolled, overdue, or one state")
	show.Flags().BoolVar(&asJSON, "json", false, "print JSON")

	var watch bool
	var interval time.Duration
	status := &cobra.Command{
		Use:   "status NAME [--watch]",
		Short: "A ring's counts by status, from the records the protocols update",
		Args:  cobra.ExactArgs(1),
		RunE: withClient(client, func(cmd *cobra.Command, c *apiClient, args []string) error {
			for {
				var r ringJSON
				if err := c.call(cmd, http.MethodGet, "/api/v1/rings/"+url.PathEscape(args[0]), nil, &r); err != nil {
					return err
				}
				w := cmd.OutOrStdout()
				fmt.Fprintf(w, "%s  ring %s\n", time.Now().Format(time.TimeOnly), r.Name)
				printCounts(w, r.Counts)
				if r.LastJob != nil {
					fmt.Fprintf(w, "  job:          %s\n", jobLine(r.LastJob))
				}
				if !watch {
					return nil
				}
				select {
				case <-cmd.Context().Done():
					return nil
				case <-time.After(interval):
				}
			}
		}),
	}
	status.Flags().BoolVar(&watch, "watch", false, "print again every --interval until interrupted")
	status.Flags().DurationVar(&interval, "interval", 2*time.Second, "with --watch, how often")

	var out, exportTargets string
	export := &cobra.Command{
		Use:   "export NAME [--targets FILTER] [-o FILE]",
		Short: "Export a ring's targets and where they stand as CSV",
		Args:  cobra.ExactArgs(1),
		RunE: withClient(client, func(cmd *cobra.Command, c *apiClient, args []string) error {
			path := "/api/v1/rings/" + url.PathEscape(args[0]) + "/export?targets=" + url.QueryEscape(exportTargets)
			req, err := http.NewRequestWithContext(cmd.Context(), http.MethodGet, c.url+path, nil)
			if err != nil {
				return err
			}
			var w io.Writer = cmd.OutOrStdout()
			if out != "" {
				f, err := os.Create(out)
				if err != nil {
					return err
				}
				defer f.Close()
				w = f
			}
			_, err = c.send(c.http, req, w)
			return err
		}),
	}
	export.Flags().StringVarP(&out, "output", "o", "", "write to this file instead of standard output")
	export.Flags().StringVar(&exportTargets, "targets", "all", "all, not-enrolled, overdue, or one state")

	del := &cobra.Command{
		Use:   "delete NAME",
		Short: "Delete a ring with its jobs (not its users or records)",
		Args:  cobra.ExactArgs(1),
		RunE: withClient(client, func(cmd *cobra.Command, c *apiClient, args []string) error {
			if err := c.call(cmd, http.MethodDelete, "/api/v1/rings/"+url.PathEscape(args[0]), nil, nil); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "ring %s deleted\n", args[0])
			return nil
		}),
	}
	pause := &cobra.Command{
		Use:   "pause NAME",
		Short: "Pause a ring's running job after the message under way",
		Args:  cobra.ExactArgs(1),
		RunE: withClient(client, func(cmd *cobra.Command, c *apiClient, args []string) error {
			return ringJobAction(cmd, c, args[0], "pause")
		}),
	}
	resume := &cobra.Command{
		Use:   "resume NAME",
		Short: "Resume a ring's paused or failed job",
		Args:  cobra.ExactArgs(1),
		RunE: withClient(client, func(cmd *cobra.Command, c *apiClient, args []string) error {
			return ringJobAction(cmd, c, args[0], "resume")
		}),
	}
	cmd.AddCommand(create, list, show, status, export, del, pause, resume)
	return cmd
}

// ringJobAction pauses or resumes a ring's latest job.
func ringJobAction(cmd *cobra.Command, c *apiClient, ring, action string) error {
	var r ringJSON
	if err := c.call(cmd, http.MethodGet, "/api/v1/rings/"+url.PathEscape(ring), nil, &r); err != nil {
		return err
	}
	if r.LastJob == nil {
		return fmt.Errorf("ring %s has no job", ring)
	}
	var p campaign.JobProgress
	path := fmt.Sprintf("/api/v1/rings/%s/jobs/%d/%s", url.PathEscape(ring), r.LastJob.Job.ID, action)
	if err := c.call(cmd, http.MethodPost, path, nil, &p); err != nil {
		return err
	}
	fmt.Fprintf(cmd.OutOrStdout(), "ring %s: %s\n", ring, jobLine(&p))
	return nil
}

func printCounts(w io.Writer, c campaign.Counts) {
	fmt.Fprintf(w, "  targets:      %d\n  pre-approved: %d\n  invited:      %d\n  failed:       %d\n  enrolled:     %d\n",
		c.Targets, c.PreApproved, c.Invited, c.Failed, c.Enrolled)
	fmt.Fprintf(w, "  delivered:    %d\n  reminded:     %d\n  overdue:      %d\n", c.Delivered, c.Reminded, c.Overdue)
	if c.Duplicates > 0 {
		fmt.Fprintf(w, "  possible duplicates: %d (a job stopped between the server's acceptance and its write)\n", c.Duplicates)
	}
}

func jobLine(p *campaign.JobProgress) string {
	if p == nil || p.Job == nil {
		return "-"
	}
	j := p.Job
	s := fmt.Sprintf("%s %d %s: %d sent, %d failed, %d to go of %d", j.Kind, j.ID, j.State, p.Sent, p.Failed, p.Pending, j.Total)
	if p.Duplicates > 0 {
		s += fmt.Sprintf(", %d possible duplicates", p.Duplicates)
	}
	if j.Error != "" {
		s += " (" + j.Error + ")"
	}
	return s
}

// jobCmd is custody invite and custody remind: start (or resume) a job,
// follow it with a progress bar, pause it on an interrupt.
func jobCmd(kind string) *cobra.Command {
	var ring string
	var req jobRequest
	var detach bool
	use, short := "invite --ring R [--dry-run] [--retry-failed]", "Send a ring its invitations (each user once; resumes an interrupted run)"
	if kind == campaign.KindReminder {
		use, short = "remind --ring R [--only-not-enrolled] [--dry-run]", "Send a ring the reminder template"
	}
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.NoArgs,
	}
	client := addAPIFlags(cmd)
	cmd.RunE = withClient(client, func(cmd *cobra.Command, c *apiClient, _ []string) error {
		if ring == "" {
			return errors.New("--ring is required")
		}
		req.Kind = kind
		base := "/api/v1/rings/" + url.PathEscape(ring) + "/jobs"
		w := cmd.OutOrStdout()
		if req.DryRun {
			var plan dryRunJSON
			if err := c.call(cmd, http.MethodPost, base, req, &plan); err != nil {
				return err
			}
			for _, t := range plan.Targets {
				fmt.Fprintf(w, "%s\t%s\t%s\n", t.Ref, t.Email, t.Name)
			}
			fmt.Fprintf(w, "dry run: %d %ss would be sent to ring %s\n", plan.Total, kind, ring)
			return nil
		}
		var p campaign.JobProgress
		if err := c.call(cmd, http.MethodPost, base, req, &p); err != nil {
			return err
		}
		if p.Job.ID == 0 {
			fmt.Fprintf(w, "ring %s: nothing to send (every target has had its %s or is enrolled)\n", ring, kind)
			return nil
		}
		fmt.Fprintf(w, "ring %s: %s job %d, %d messages (%d already sent)\n", ring, kind, p.Job.ID, p.Job.Total, p.Sent+p.Failed)
		if detach {
			return nil
		}
		return followJob(cmd, c, ring, p.Job.ID)
	})
	f := cmd.Flags()
	f.StringVar(&ring, "ring", "", "the ring")
	f.BoolVar(&req.DryRun, "dry-run", false, "list whom it would reach and send nothing")
	f.BoolVar(&detach, "detach", false, "start the job and return; it runs in the server")
	if kind == campaign.KindInvitation {
		f.BoolVar(&req.RetryFailed, "retry-failed", false, "invite again those whose invitation failed (after fixing their address)")
	} else {
		f.BoolVar(&req.OnlyNotEnrolled, "only-not-enrolled", false, "only users whose devices have not enrolled (pre-approved, invited or failed)")
	}
	return cmd
}

// followJob shows a job's progress until it finishes; an interrupt
// (Ctrl-C) pauses it, to be resumed by running the same command again.
func followJob(cmd *cobra.Command, c *apiClient, ring string, id int) error {
	path := fmt.Sprintf("/api/v1/rings/%s/jobs/%d", url.PathEscape(ring), id)
	interrupt := make(chan os.Signal, 1)
	signal.Notify(interrupt, os.Interrupt)
	defer signal.Stop(interrupt)
	var p campaign.JobProgress
	if err := c.call(cmd, http.MethodGet, path, nil, &p); err != nil {
		return err
	}
	bar := newBar(cmd, p.Job.Total, "sending")
	bar.Set(p.Sent + p.Failed)
	for {
		select {
		case <-interrupt:
			bar.Finish()
			if err := c.call(cmd, http.MethodPost, path+"/pause", nil, &p); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "\npaused: %s\nrun the same command again to resume\n", jobLine(&p))
			return nil
		case <-cmd.Context().Done():
			return cmd.Context().Err()
		case <-time.After(200 * time.Millisecond):
		}
		if err := c.call(cmd, http.MethodGet, path, nil, &p); err != nil {
			return err
		}
		bar.Set(p.Sent + p.Failed)
		switch p.Job.State {
		case campaign.JobDone:
			bar.Finish()
			fmt.Fprintf(cmd.OutOrStdout(), "\n%s\n", jobLine(&p))
			return nil
		case campaign.JobFailed, campaign.JobPaused:
			bar.Finish()
			fmt.Fprintf(cmd.OutOrStdout(), "\n%s\n", jobLine(&p))
			if p.Job.State == campaign.JobFailed {
				return fmt.Errorf("the job stopped: %s (fix it, then run the same command again to resume)", p.Job.Error)
			}
			return nil
		}
	}
}

func templatesCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "templates", Short: "The invitation and reminder templates (Go templates)"}
	client := addAPIFlags(cmd)
	show := &cobra.Command{
		Use:   "show invitation|reminder",
		Short: "Print a template (yours, or the default)",
		Args:  cobra.ExactArgs(1),
		RunE: withClient(client, func(cmd *cobra.Command, c *apiClient, args []string) error {
			var t templateJSON
			if err := c.call(cmd, http.MethodGet, "/api/v1/templates/"+url.PathEscape(args[0]), nil, &t); err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			origin := "default"
			if t.Custom {
				origin = "custom"
			}
			fmt.Fprintf(w, "# %s template (%s)\n## subject\n%s\n## text\n%s\n## html\n%s\n", args[0], origin, t.Subject, t.Text, t.HTML)
			return nil
		}),
	}
	var subject, textFile, htmlFile string
	set := &cobra.Command{
		Use:   "set invitation|reminder --subject S --text-file F [--html-file F]",
		Short: "Replace a template; variables: .Name .Email .Link .Device .Ring .Deadline .HelpDesk .Reminder .Overdue, and cid:" + campaign.QRName + " for the QR code",
		Args:  cobra.ExactArgs(1),
		RunE: withClient(client, func(cmd *cobra.Command, c *apiClient, args []string) error {
			var t campaign.Templates
			t.Subject = subject
			text, err := os.ReadFile(textFile)
			if err != nil {
				return err
			}
			t.Text = string(text)
			if htmlFile != "" {
				html, err := os.ReadFile(htmlFile)
				if err != nil {
					return err
				}
				t.HTML = string(html)
			}
			if err := c.call(cmd, http.MethodPut, "/api/v1/templates/"+url.PathEscape(args[0]), t, nil); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s template stored\n", args[0])
			return nil
		}),
	}
	set.Flags().StringVar(&subject, "subject", "", "subject template")
	set.Flags().StringVar(&textFile, "text-file", "", "file with the text body template")
	set.Flags().StringVar(&htmlFile, "html-file", "", "file with the HTML body template (html/template)")
	set.MarkFlagRequired("subject")
	set.MarkFlagRequired("text-file")
	reset := &cobra.Command{
		Use:   "reset invitation|reminder",
		Short: "Go back to the default template",
		Args:  cobra.ExactArgs(1),
		RunE: withClient(client, func(cmd *cobra.Command, c *apiClient, args []string) error {
			if err := c.call(cmd, http.MethodDelete, "/api/v1/templates/"+url.PathEscape(args[0]), nil, nil); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s template reset to the default\n", args[0])
			return nil
		}),
	}
	cmd.AddCommand(show, set, reset)
	return cmd
}

func webhookCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "webhook", Short: "The webhook channel for rings (SMS, Teams, Slack through a bridge)"}
	client := addAPIFlags(cmd)
	var req webhookRequest
	var secretFile string
	set := &cobra.Command{
		Use:   "set --url URL [--secret-file F] [--rate N]",
		Short: "Store where the webhook channel posts (the secret is encrypted at rest)",
		Args:  cobra.NoArgs,
		RunE: withClient(client, func(cmd *cobra.Command, c *apiClient, _ []string) error {
			if secretFile != "" {
				b, err := os.ReadFile(secretFile)
				if err != nil {
					return err
				}
				req.Secret = strings.TrimSpace(string(b))
			}
			var st webhookJSON
			if err := c.call(cmd, http.MethodPut, "/api/v1/webhook", req, &st); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "webhook channel posts to %s (signed: %v)\n", st.URL, st.HasSecret)
			return nil
		}),
	}
	set.Flags().StringVar(&req.URL, "url", "", "where to POST each message as JSON")
	set.Flags().StringVar(&secretFile, "secret-file", "", "file with the key that signs each body ("+campaign.SignatureHeader+": sha256=HMAC)")
	set.Flags().Float64Var(&req.Rate, "rate", 0, "most messages per second (0: no limit)")
	show := &cobra.Command{
		Use:   "show",
		Short: "Show the webhook channel (not its secret)",
		Args:  cobra.NoArgs,
		RunE: withClient(client, func(cmd *cobra.Command, c *apiClient, _ []string) error {
			var st webhookJSON
			if err := c.call(cmd, http.MethodGet, "/api/v1/webhook", nil, &st); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "url:    %s\nsigned: %v\nrate:   %g/s\n", st.URL, st.HasSecret, st.Rate)
			return nil
		}),
	}
	cmd.AddCommand(set, show)
	return cmd
}
