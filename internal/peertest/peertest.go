// Package peertest drives real, independently written peers installed from
// Debian's packages (micromdm's scepclient and scepserver from package scep,
// certmonger, openssl) so that interoperability tests of our servers and
// clients can call them.
//
// Every helper finds its program with [Need]: a missing program skips the
// test, or fails it when the environment variable CI is set. Programs run in
// temporary directories, talk only to the URLs they are given, keep their logs
// out of the test output, and are stopped when the test ends.
package peertest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// Need returns the path of program (a name looked up in PATH, /usr/bin and
// /usr/sbin, or an absolute path). If it is missing, the test is skipped with
// a message naming debianPackage, or fails when the environment variable CI is
// non-empty, because CI installs the packages.
func Need(t testing.TB, program, debianPackage string) string {
	t.Helper()
	if p, err := lookPath(program); err == nil {
		return p
	}
	msg := fmt.Sprintf("peertest: %s not found; install the Debian package %q (apt-get install %s)",
		program, debianPackage, debianPackage)
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

func lookPath(program string) (string, error) {
	p, err := exec.LookPath(program)
	if err == nil || strings.ContainsRune(program, '/') {
		return p, err
	}
	for _, dir := range []string{"/usr/bin", "/usr/sbin", "/bin", "/sbin"} {
		if p, err2 := exec.LookPath(filepath.Join(dir, program)); err2 == nil {
			return p, nil
		}
	}
	return "", err
}

// run runs a short-lived program to completion and returns its combined
// output; ctx bounds it.
func run(ctx context.Context, env []string, dir, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = env
	cmd.Dir = dir
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	cmd.WaitDelay = 2 * time.Second
	setProcAttr(cmd)
	// On cancellation kill the whole group, not only the leader.
	cmd.Cancel = func() error { signalGroup(cmd, true); return nil }
	err := cmd.Run()
	if err != nil && ctx.Err() != nil {
		err = fmt.Errorf("%w (%w)", err, ctx.Err())
	}
	return out.String(), err
}

// daemon is a long-running child process whose output goes to a log file.
type daemon struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{} // closed when the process has exited
	waitErr error
	stopped sync.Once
}

// startDaemon starts name with args, its stdout and stderr appended to
// logPath, in its own process group so that stop also ends its children.
func startDaemon(env []string, dir, logPath, name string, args ...string) (*daemon, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	defer logf.Close() // the child has its own copy
	cmd := exec.Command(name, args...)
	cmd.Env = env
	cmd.Dir = dir
	cmd.Stdout = logf
	cmd.Stderr = logf
	setProcAttr(cmd)
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	d := &daemon{name: filepath.Base(name), cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		d.waitErr = cmd.Wait()
		close(d.done)
	}()
	return d, nil
}

// exitErr returns nil while the process runs, and an error saying how it
// ended once it has.
func (d *daemon) exitErr() error {
	select {
	case <-d.done:
		return fmt.Errorf("%s exited: %v", d.name, d.waitErr)
	default:
		return nil
	}
}

// stop ends the process group: SIGTERM, then SIGKILL after a grace period.
// It is safe to call more than once.
func (d *daemon) stop() {
	d.stopped.Do(func() {
		signalGroup(d.cmd, false)
		select {
		case <-d.done:
		case <-time.After(3 * time.Second):
		}
		// Kill whatever is left of the group (the leader may have exited
		// while its children had not).
		signalGroup(d.cmd, true)
		select {
		case <-d.done:
		case <-time.After(5 * time.Second):
		}
	})
}

// logTail returns the last n lines of the daemon's log, without PEM blocks
// and lines that look like base64 (certmonger logs whole messages).
func (d *daemon) logTail(n int) string {
	b, err := os.ReadFile(d.logPath)
	if err != nil {
		return ""
	}
	var keep []string
	inPEM := false
	for _, l := range strings.Split(strings.TrimRight(string(b), "\n"), "\n") {
		switch {
		case strings.Contains(l, "-----BEGIN "):
			inPEM = true
		case strings.Contains(l, "-----END "):
			inPEM = false
		case !inPEM && !looksBase64(l):
			keep = append(keep, l)
		}
	}
	if len(keep) > n {
		keep = keep[len(keep)-n:]
	}
	return strings.Join(keep, "\n")
}

func looksBase64(l string) bool {
	l = strings.TrimSpace(l)
	if len(l) < 40 {
		return false
	}
	for _, c := range l {
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '+' || c == '/' || c == '=') {
			return false
		}
	}
	return true
}

// cleanEnv returns the environment of this process without the variables
// that would point a peer at another D-Bus, another certmonger or an HTTP
// proxy (peers talk only to 127.0.0.1), plus extra.
func cleanEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		u := strings.ToUpper(k)
		if strings.HasPrefix(u, "DBUS_") || strings.HasPrefix(u, "CERTMONGER_") || strings.HasSuffix(u, "_PROXY") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, extra...)
}

// waitFor polls cond every interval until it returns true or an error, or
// until ctx ends.
func waitFor(ctx context.Context, interval time.Duration, cond func() (bool, error)) error {
	for {
		ok, err := cond()
		if err != nil || ok {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(interval):
		}
	}
}
