package testbed

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// proc is a process the testbed started; it is stopped by its PID only.
// It dies with the testbed's process (parent-death signal), so a killed
// run leaves no process behind, only namespaces for Clean.
type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error
	end  time.Time // when it ended (valid once done is closed)
	log  *os.File
}

// startProc starts name args... with stdout and stderr in logPath.
func startProc(label, logPath, name string, args ...string) (*proc, error) {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", label, err)
	}
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("start %s: %w", label, err)
	}
	p := &proc{name: label, cmd: cmd, done: make(chan struct{}), log: f}
	go func() {
		p.err = cmd.Wait()
		p.end = time.Now()
		_ = f.Close()
		close(p.done)
	}()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// wait waits at most d for the process to end and reports whether it did.
func (p *proc) wait(d time.Duration) bool {
	select {
	case <-p.done:
		return true
	case <-time.After(d):
		return false
	}
}

// stop sends SIGTERM, then SIGKILL after grace, and waits for the end.
func (p *proc) stop(grace time.Duration) {
	if p.exited() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	if !p.wait(grace) {
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// userHZ is the unit of /proc/PID/stat times on Linux.
const userHZ = 100

// cpu returns the CPU seconds (user + system) the process has used: from
// /proc while it runs, from its rusage once it has ended.
func (p *proc) cpu() float64 {
	if p.exited() {
		if st := p.cmd.ProcessState; st != nil {
			return (st.UserTime() + st.SystemTime()).Seconds()
		}
		return 0
	}
	return procCPU(p.pid())
}

// procCPU reads utime + stime of a live process; 0 if it is gone.
func procCPU(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseFloat(f[11], 64)
	k, _ := strconv.ParseFloat(f[12], 64)
	return (u + k) / userHZ
}

// writtenBytes returns what process pid has handed to write(2) and send(2)
// so far (wchar in /proc/PID/io); -1 if unknown.
func writtenBytes(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		return -1
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "wchar: "); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err == nil {
				return n
			}
		}
	}
	return -1
}
