//go:build !linux

package peertest

import "os/exec"

// setProcAttr does nothing outside Linux; the peers are Debian programs.
func setProcAttr(cmd *exec.Cmd) {}

// signalGroup kills the child itself; there are no process groups here.
func signalGroup(cmd *exec.Cmd, kill bool) {
	if cmd.Process != nil {
		_ = cmd.Process.Kill()
	}
}
