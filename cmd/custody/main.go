// Command custody is the reference server of the Custody MDM engine and its
// admin CLI: `custody serve` runs the server; the other subcommands call its
// admin API.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/custodymdm/custody/enroll/campaign"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "custody:", err)
		os.Exit(1)
	}
}

// run executes one command line; tests call it in-process.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	root := &cobra.Command{
		Use:           "custody",
		Short:         "Custody: Apple and Android MDM engine and reference server",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.AddCommand(serveCmd(), challengeCmd(), certsCmd(), enrollCmd(), devicesCmd(), enqueueCmd(), commandsCmd(), pushCmd(), pushCertCmd(), simCmd(),
		preenrollCmd(), usersCmd(), settingsCmd(), groupsCmd(), assignmentsCmd(), traceCmd(), depCmd(), androidCmd(), zeroTouchCmd(), mailCmd(),
		ringsCmd(), jobCmd(campaign.KindInvitation), jobCmd(campaign.KindReminder), templatesCmd(), webhookCmd(),
		scimCmd(), directoryCmd(), offboardingCmd(), googleCmd(), migrateCmd(), exportCmd(), importDataCmd())
	return root.ExecuteContext(ctx)
}

// envDuration returns the environment variable's value as a duration, or
// def when it is unset or unreadable.
func envDuration(name string, def time.Duration) time.Duration {
	if d, err := time.ParseDuration(os.Getenv(name)); err == nil {
		return d
	}
	return def
}

// envDefault returns the environment variable's value, or def.
func envDefault(name, def string) string {
	if v, ok := os.LookupEnv(name); ok && v != "" {
		return v
	}
	return def
}
