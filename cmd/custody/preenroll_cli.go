package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/micromdm/plist"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/custodymdm/custody/enroll"
)

// openInput opens the file a command reads, or standard input for "-",
// and returns its size when known (-1 otherwise).
func openInput(cmd *cobra.Command, name string) (io.ReadCloser, int64, error) {
	if name == "-" {
		return io.NopCloser(cmd.InOrStdin()), -1, nil
	}
	f, err := os.Open(name)
	if err != nil {
		return nil, 0, err
	}
	size := int64(-1)
	if st, err := f.Stat(); err == nil {
		size = st.Size()
	}
	return f, size, nil
}

// newByteBar shows the progress of reading size bytes (-1 when unknown).
func newByteBar(cmd *cobra.Command, size int64, what string) *progressbar.ProgressBar {
	return progressbar.NewOptions64(size,
		progressbar.OptionSetWriter(cmd.ErrOrStderr()),
		progressbar.OptionSetDescription(what),
		progressbar.OptionShowBytes(true),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionClearOnFinish(),
	)
}

// upload streams body to the admin API with a progress bar and decodes the
// JSON reply into out, for a 2xx reply and for the statuses in accept.
func (c *apiClient) upload(cmd *cobra.Command, path, contentType string, body io.Reader, size int64, out any, accept ...int) (int, error) {
	bar := newByteBar(cmd, size, "uploading")
	r := progressbar.NewReader(body, bar)
	req, err := http.NewRequestWithContext(cmd.Context(), http.MethodPost, c.url+path, &r)
	if err != nil {
		return 0, err
	}
	req.ContentLength = size
	req.Header.Set("Content-Type", contentType)
	// No overall timeout: a large file takes as long as it takes.
	hc := *c.http
	hc.Timeout = 0
	status, err := c.send(&hc, req, out, accept...)
	bar.Finish()
	return status, err
}

// importCmd is `custody preenroll import` and `custody users import`.
func importCmd(client func() (*apiClient, error), users bool) *cobra.Command {
	var groups, maps []string
	var dryRun, skipInvalid, asJSON bool
	what, path, required := "pre-enrollment records", "/api/v1/records/import", "name, email, ownership, serial number and platform; optional mobile, device name and groups"
	if users {
		what, path, required = "users without devices", "/api/v1/users/import", "name, email and ownership; optional mobile and groups"
	}
	cmd := &cobra.Command{
		Use:   "import FILE.csv",
		Short: "Import " + what + " from a CSV file",
		Long: `Import ` + what + ` from a CSV file (- for standard input).

Columns: ` + required + `. Headers are matched
whatever their case, spaces or underscores, with the usual synonyms
(SerialNumber, serial_number, "Serial Number", devicename...); --map names
the field of a column the automatic mapping does not know.

Every bad row is reported with its line number and reason. A file with any
bad row writes nothing, unless --skip-invalid, which writes the good rows.
The import is one transaction: interrupted, it writes all of the file or
nothing. Importing a file again updates what changed and duplicates nothing.`,
		Args: cobra.ExactArgs(1),
		RunE: withClient(client, func(cmd *cobra.Command, c *apiClient, args []string) error {
			q := url.Values{}
			for _, g := range groups {
				q.Add("group", g)
			}
			for _, m := range maps {
				if _, _, ok := strings.Cut(m, "="); !ok {
					return fmt.Errorf("--map %q: want COLUMN=FIELD", m)
				}
				q.Add("map", m)
			}
			if dryRun {
				q.Set("dry_run", "true")
			}
			if skipInvalid {
				q.Set("skip_invalid", "true")
			}
			in, size, err := openInput(cmd, args[0])
			if err != nil {
				return err
			}
			defer in.Close()
			var res enroll.ImportResult
			if _, err := c.upload(cmd, path+"?"+q.Encode(), "text/csv", in, size, &res, http.StatusUnprocessableEntity); err != nil {
				return err
			}
			if asJSON {
				if err := printJSON(cmd, res); err != nil {
					return err
				}
			} else {
				printImport(cmd, &res, dryRun)
			}
			if len(res.Errors) > 0 && !res.Written && !dryRun {
				return fmt.Errorf("%d bad rows: nothing imported (fix them, or use --skip-invalid to import the %d good rows)", len(res.Errors), res.Rows)
			}
			return nil
		}),
	}
	cmd.Flags().StringArrayVar(&groups, "group", nil, "add every row to this group (repeatable)")
	cmd.Flags().StringArrayVar(&maps, "map", nil, "map a column to a field, as COLUMN=FIELD (repeatable)")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "validate the file and write nothing")
	cmd.Flags().BoolVar(&skipInvalid, "skip-invalid", false, "import the good rows of a file with bad rows")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the result as JSON")
	return cmd
}

func printImport(cmd *cobra.Command, res *enroll.ImportResult, dryRun bool) {
	out := cmd.OutOrStdout()
	fields := make([]string, 0, len(res.Columns))
	for f, col := range res.Columns {
		fields = append(fields, fmt.Sprintf("%s←%q", f, col))
	}
	sort.Strings(fields)
	fmt.Fprintf(out, "columns: %s\n", strings.Join(fields, ", "))
	for _, e := range res.Errors {
		fmt.Fprintf(out, "line %d: %s\n", e.Line, e.Reason)
	}
	if res.Truncated {
		fmt.Fprintf(out, "stopped reading after %d bad rows\n", len(res.Errors))
	}
	switch {
	case dryRun:
		fmt.Fprintf(out, "dry run: %d good rows, %d bad; nothing written\n", res.Rows, len(res.Errors))
	case res.Written:
		st := res.Stats
		fmt.Fprintf(out, "imported %d rows (%d bad rows skipped): records %d created, %d updated, %d unchanged; users %d created, %d updated, %d unchanged\n",
			res.Rows, len(res.Errors), st.RecordsCreated, st.RecordsUpdated, st.RecordsUnchanged, st.UsersCreated, st.UsersUpdated, st.UsersUnchanged)
	case len(res.Errors) == 0:
		fmt.Fprintln(out, "the file has no rows: nothing written")
	}
}

func preenrollCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "preenroll", Short: "Pre-enroll devices by serial number"}
	client := addAPIFlags(cmd)
	var rows int
	sample := &cobra.Command{
		Use:   "sample",
		Short: "Print a sample CSV file to fill in",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if rows < 0 || rows > 10_000_000 {
				return fmt.Errorf("--rows %d: want 0 to 10000000", rows)
			}
			return enroll.WriteSampleCSV(cmd.OutOrStdout(), rows)
		},
	}
	sample.Flags().IntVar(&rows, "rows", 3, "example rows")
	reset := &cobra.Command{
		Use:   "reset SERIAL",
		Short: "Return a record to pre-approved so its device may enrol again",
		Long: `Return a record to pre-approved and forget its enrollment links (token,
certificate, enrollment), keeping its history. An enrolled record refuses a
new ADE enrollment of its serial (a replayed MachineInfo) until it is reset.`,
		Args: cobra.ExactArgs(1),
		RunE: withClient(client, func(cmd *cobra.Command, c *apiClient, args []string) error {
			var row inventoryJSON
			if err := c.call(cmd, http.MethodPost, "/api/v1/records/"+url.PathEscape(args[0])+"/reset", nil, &row); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s is %s\n", row.Serial, row.Status)
			return nil
		}),
	}
	cmd.AddCommand(importCmd(client, false), sample, reset)
	return cmd
}

func usersCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "users", Short: "Users, with or without devices"}
	client := addAPIFlags(cmd)
	cmd.AddCommand(importCmd(client, true))
	return cmd
}

func settingsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "settings",
		Short: "Show and change the server's settings",
		Long: `Show and change the server's settings. Known settings:

  enrollment.preenrolled-only   true: only devices with a pre-enrollment
                                record may enrol, with a link minted for
                                that record or its user.`,
	}
	client := addAPIFlags(cmd)
	values := func(cmd *cobra.Command) (map[string]string, error) {
		c, err := client()
		if err != nil {
			return nil, err
		}
		var values map[string]string
		return values, c.call(cmd, http.MethodGet, "/api/v1/settings", nil, &values)
	}
	list := &cobra.Command{
		Use:   "list",
		Short: "List every setting",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			values, err := values(cmd)
			if err != nil {
				return err
			}
			names := make([]string, 0, len(values))
			for n := range values {
				names = append(names, n)
			}
			sort.Strings(names)
			for _, n := range names {
				fmt.Fprintf(cmd.OutOrStdout(), "%s = %s\n", n, values[n])
			}
			return nil
		},
	}
	get := &cobra.Command{
		Use:   "get NAME",
		Short: "Print one setting",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			values, err := values(cmd)
			if err != nil {
				return err
			}
			v, ok := values[args[0]]
			if !ok {
				return fmt.Errorf("unknown setting %q (known: %v)", args[0], enroll.SettingNames())
			}
			fmt.Fprintln(cmd.OutOrStdout(), v)
			return nil
		},
	}
	set := &cobra.Command{
		Use:   "set NAME VALUE",
		Short: "Change one setting",
		Args:  cobra.ExactArgs(2),
		RunE: withClient(client, func(cmd *cobra.Command, c *apiClient, args []string) error {
			var values map[string]string
			if err := c.call(cmd, http.MethodPatch, "/api/v1/settings", map[string]string{args[0]: args[1]}, &values); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s = %s\n", args[0], values[args[0]])
			return nil
		}),
	}
	cmd.AddCommand(list, get, set)
	return cmd
}

func groupsCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "groups", Short: "Groups of records and users"}
	client := addAPIFlags(cmd)
	var asJSON bool
	list := &cobra.Command{
		Use:   "list",
		Short: "List groups with their members and assignments",
		Args:  cobra.NoArgs,
		RunE: withClient(client, func(cmd *cobra.Command, c *apiClient, _ []string) error {
			var resp struct {
				Groups []groupJSON `json:"groups"`
			}
			if err := c.call(cmd, http.MethodGet, "/api/v1/groups", nil, &resp); err != nil {
				return err
			}
			if asJSON {
				return printJSON(cmd, resp.Groups)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "GROUP\tRECORDS\tENROLLED\tUSERS\tASSIGNMENTS")
			for _, g := range resp.Groups {
				fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\n", g.Name, g.Records, g.Enrolled, g.Users, g.Assignments)
			}
			return tw.Flush()
		}),
	}
	list.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	var serials, emails []string
	add := &cobra.Command{
		Use:   "add GROUP (--serial S | --email E)...",
		Short: "Add records and users to a group; enrolled devices get its assignments at once",
		Args:  cobra.ExactArgs(1),
		RunE: withClient(client, func(cmd *cobra.Command, c *apiClient, args []string) error {
			var resp struct {
				QueuedFor []string `json:"queued_for"`
			}
			err := c.call(cmd, http.MethodPost, "/api/v1/groups/"+url.PathEscape(args[0])+"/members", membersRequest{Serials: serials, Emails: emails}, &resp)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "added %d records and %d users to %s; assignments queued for %d enrolled devices\n",
				len(serials), len(emails), args[0], len(resp.QueuedFor))
			return nil
		}),
	}
	add.Flags().StringArrayVar(&serials, "serial", nil, "serial number of a record (repeatable)")
	add.Flags().StringArrayVar(&emails, "email", nil, "email of a user (repeatable)")
	cmd.AddCommand(list, add)
	return cmd
}

func assignmentsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "assignments",
		Short: "Profiles and commands assigned to groups",
		Long: `Profiles and commands assigned to groups. A device of the group gets
each assignment once: when it completes enrollment, when it joins the group,
or at once when the assignment is added after it enrolled. Profiles are
signed with the server's profile-signing identity when they are installed.`,
	}
	client := addAPIFlags(cmd)
	var profile, requestType, plistFile, androidPolicy string
	var params []string
	add := &cobra.Command{
		Use:   "add GROUP (--profile FILE.mobileconfig | --type REQUESTTYPE [--param KEY=VALUE...] | --plist FILE | --android-policy FILE.json)",
		Short: "Assign a profile, a command or an Android policy to a group",
		Args:  cobra.ExactArgs(1),
		RunE: withClient(client, func(cmd *cobra.Command, c *apiClient, args []string) error {
			req := assignmentRequest{Group: args[0]}
			var err error
			switch {
			case androidPolicy != "" && (profile != "" || requestType != "" || plistFile != ""):
				return errors.New("give --android-policy, --profile or a command, one of them")
			case androidPolicy != "":
				data, err := os.ReadFile(androidPolicy)
				if err != nil {
					return err
				}
				if !json.Valid(data) {
					return fmt.Errorf("%s is not JSON", androidPolicy)
				}
				req.AndroidPolicy = data
			case profile != "" && (requestType != "" || plistFile != ""):
				return errors.New("give --profile, or a command, not both")
			case profile != "":
				if req.Profile, err = os.ReadFile(profile); err != nil {
					return err
				}
			case plistFile != "":
				if req.Plist, err = os.ReadFile(plistFile); err != nil {
					return err
				}
			case requestType != "":
				dict, err := parseParams(params)
				if err != nil {
					return err
				}
				dict["RequestType"] = requestType
				if req.Plist, err = plist.Marshal(dict); err != nil {
					return err
				}
			default:
				return errors.New("give --profile, --type or --plist")
			}
			var a assignmentJSON
			if err := c.call(cmd, http.MethodPost, "/api/v1/assignments", req, &a); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), a.ID)
			fmt.Fprintf(cmd.ErrOrStderr(), "%s %s assigned to %s; queued now for %d enrolled devices\n", a.Kind, a.Name, a.Group, len(a.QueuedFor))
			return nil
		}),
	}
	add.Flags().StringVar(&profile, "profile", "", "a .mobileconfig file (signed or not)")
	add.Flags().StringVar(&requestType, "type", "", "a command's RequestType")
	add.Flags().StringArrayVar(&params, "param", nil, "a command key as KEY=VALUE (repeatable; see custody enqueue)")
	add.Flags().StringVar(&plistFile, "plist", "", "a plist file with a command dictionary")
	add.Flags().StringVar(&androidPolicy, "android-policy", "", "an Android Management API policy (JSON) for the group's Android devices")
	var group string
	var asJSON bool
	list := &cobra.Command{
		Use:   "list",
		Short: "List assignments",
		Args:  cobra.NoArgs,
		RunE: withClient(client, func(cmd *cobra.Command, c *apiClient, _ []string) error {
			var resp struct {
				Assignments []assignmentJSON `json:"assignments"`
			}
			if err := c.call(cmd, http.MethodGet, "/api/v1/assignments?group="+url.QueryEscape(group), nil, &resp); err != nil {
				return err
			}
			if asJSON {
				return printJSON(cmd, resp.Assignments)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tGROUP\tKIND\tNAME\tCREATED")
			for _, a := range resp.Assignments {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", a.ID, a.Group, a.Kind, a.Name, a.CreatedAt.Local().Format(time.DateTime))
			}
			return tw.Flush()
		}),
	}
	list.Flags().StringVar(&group, "group", "", "only this group's")
	list.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	del := &cobra.Command{
		Use:   "delete ID",
		Short: "Delete an assignment (devices that have it keep it)",
		Args:  cobra.ExactArgs(1),
		RunE: withClient(client, func(cmd *cobra.Command, c *apiClient, args []string) error {
			return c.call(cmd, http.MethodDelete, "/api/v1/assignments/"+url.PathEscape(args[0]), nil, nil)
		}),
	}
	cmd.AddCommand(add, list, del)
	return cmd
}
