//go:build linux

package peertest

import (
	"os/exec"
	"syscall"
)

// setProcAttr puts the child in its own process group (so that its children
// can be signalled with it) and has the kernel kill it if the test binary
// dies first, so that no peer outlives a crashed or timed-out test.
func setProcAttr(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// signalGroup sends SIGTERM (or SIGKILL) to the child's process group.
func signalGroup(cmd *exec.Cmd, kill bool) {
	if cmd.Process == nil {
		return
	}
	sig := syscall.SIGTERM
	if kill {
		sig = syscall.SIGKILL
	}
	_ = syscall.Kill(-cmd.Process.Pid, sig)
}
