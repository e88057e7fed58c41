package peertest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// A GoProgram is a peer written in Go, pinned at an exact release and built
// from the Go module proxy with `go install`.
type GoProgram struct {
	Name    string // the binary's name, e.g. "nanomdm"
	Package string // its main package, e.g. "github.com/micromdm/nanomdm/cmd/nanomdm"
	Version string // an exact version, e.g. "v0.9.0"
}

// The pinned peers. .ci/run builds the same versions into the tools dir.
var (
	NanoMDM       = GoProgram{"nanomdm", "github.com/micromdm/nanomdm/cmd/nanomdm", "v0.9.0"}
	ScepServer230 = GoProgram{"scepserver", "github.com/micromdm/scep/v2/cmd/scepserver", "v2.3.0"}
	ScepClient230 = GoProgram{"scepclient", "github.com/micromdm/scep/v2/cmd/scepclient", "v2.3.0"}
)

// ToolsDir is where pinned Go peers are kept, one directory per program and
// version: $CUSTODY_TOOLS, or custody-tools in the user's cache directory.
func ToolsDir() string {
	if d := os.Getenv("CUSTODY_TOOLS"); d != "" {
		return d
	}
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "custody-tools")
	}
	return filepath.Join(os.TempDir(), "custody-tools")
}

// Dir is the directory p's binary is installed in under ToolsDir.
func (p GoProgram) Dir() string {
	return filepath.Join(ToolsDir(), p.Name+"@"+p.Version)
}

// Module is the argument go install takes: package@version.
func (p GoProgram) Module() string { return p.Package + "@" + p.Version }

var buildMu sync.Mutex // one go install at a time within a test binary

// Need returns the path of p's binary, building it with go install into
// p.Dir() when it is not there yet (about 30 s the first time, nothing
// after). When it cannot be built (no go command, no module proxy), the test
// is skipped with the command to run, or fails when the environment variable
// CI is set, because .ci/run builds it.
func (p GoProgram) Need(t testing.TB) string {
	t.Helper()
	bin := filepath.Join(p.Dir(), p.Name)
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	buildMu.Lock()
	defer buildMu.Unlock()
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	err := p.build()
	if err == nil {
		return bin
	}
	msg := fmt.Sprintf("peertest: %s %s is not built and could not be built (%v); build it with: GOBIN=%s go install %s",
		p.Name, p.Version, err, p.Dir(), p.Module())
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// build installs p into a temporary directory beside p.Dir() and renames it
// into place, so that a build interrupted halfway leaves nothing that looks
// installed.
func (p GoProgram) build() error {
	goBin, err := exec.LookPath("go")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(ToolsDir(), 0o755); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(ToolsDir(), ".build-"+p.Name+"-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	// Outside any module, so that the project's go.mod does not take part.
	env := append(cleanEnv(), "GOBIN="+tmp, "GOFLAGS=-mod=mod", "GO111MODULE=on")
	if out, err := run(ctx, env, os.TempDir(), goBin, "install", p.Module()); err != nil {
		return fmt.Errorf("go install %s: %w: %s", p.Module(), err, out)
	}
	if _, err := os.Stat(filepath.Join(tmp, path.Base(p.Package))); err != nil {
		return fmt.Errorf("go install %s made no %s", p.Module(), path.Base(p.Package))
	}
	if err := os.Rename(tmp, p.Dir()); err != nil && !os.IsExist(err) {
		// Another process may have installed it meanwhile.
		if _, statErr := os.Stat(filepath.Join(p.Dir(), p.Name)); statErr == nil {
			return nil
		}
		return err
	}
	return nil
}
