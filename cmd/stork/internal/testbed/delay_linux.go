package testbed

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// DelayConfig configures RunDelay.
type DelayConfig struct {
	// Dev is the TUN device to create (e.g. "tun0").
	Dev string
	// Delay is what every packet waits before it goes back to the kernel.
	Delay time.Duration
	// MTU bounds a packet; it must not be below the device's MTU.
	MTU int
	// Queue is the most packets held at once; one more is dropped, as a
	// full router queue drops. Default 16384.
	Queue int
	// Ready is called once the device exists.
	Ready func()
	Log   *slog.Logger
}

type delayed struct {
	at  time.Time
	buf *[]byte
	n   int
}

// RunDelay creates the TUN device cfg.Dev and writes every packet the
// kernel routes into it back into the kernel cfg.Delay later, in the order
// it came, until ctx ends. The router namespace's policy routing sends
// every packet that crosses between sites into the device and routes what
// comes out of it by its main table, so a packet takes the delay once per
// crossing. The delay is the same for every packet, so a FIFO keeps the
// deadlines in order.
func RunDelay(ctx context.Context, cfg DelayConfig) error {
	if cfg.Queue <= 0 {
		cfg.Queue = 16384
	}
	if cfg.MTU <= 0 {
		cfg.MTU = 65535
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	// The forwarder stands for the network: ahead of the daemons it
	// delays, so that a busy machine stretches the delay less. Best effort.
	_ = unix.Setpriority(unix.PRIO_PROCESS, 0, -10)
	f, err := openTUN(cfg.Dev)
	if err != nil {
		return err
	}
	if cfg.Ready != nil {
		cfg.Ready()
	}
	pool := sync.Pool{New: func() any { b := make([]byte, cfg.MTU+64); return &b }}
	queue := make(chan delayed, cfg.Queue)
	var wg sync.WaitGroup
	var written, dropped, bytes int64
	wg.Add(1)
	go func() {
		defer wg.Done()
		timer := time.NewTimer(time.Hour)
		defer timer.Stop()
		for p := range queue {
			if d := time.Until(p.at); d > 0 {
				timer.Reset(d)
				select {
				case <-timer.C:
				case <-ctx.Done():
					return
				}
			}
			if _, err := f.Write((*p.buf)[:p.n]); err != nil && ctx.Err() == nil {
				dropped++ // the kernel refused it (e.g. no route): as a router drops it
			} else {
				written++
				bytes += int64(p.n)
			}
			pool.Put(p.buf)
		}
	}()
	stop := context.AfterFunc(ctx, func() { _ = f.Close() })
	defer stop()
	var full int64
	var rerr error
	for {
		b := pool.Get().(*[]byte)
		n, err := f.Read(*b)
		if err != nil {
			if ctx.Err() == nil && !errors.Is(err, os.ErrClosed) {
				rerr = fmt.Errorf("delay %s: read: %w", cfg.Dev, err)
			}
			break
		}
		select {
		case queue <- delayed{at: time.Now().Add(cfg.Delay), buf: b, n: n}:
		default:
			full++
			pool.Put(b)
		}
	}
	close(queue)
	wg.Wait()
	_ = f.Close()
	cfg.Log.Info("delay stopped", "dev", cfg.Dev, "delay", cfg.Delay, "packets", written, "bytes", bytes, "queue_full_drops", full, "write_drops", dropped)
	return rerr
}

// openTUN creates the TUN device name (IP packets, no packet information
// header) and returns it in non-blocking mode, so that closing the file
// ends a blocked Read.
func openTUN(name string) (*os.File, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("open /dev/net/tun: %w", err)
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		_ = unix.Close(fd)
		return nil, fmt.Errorf("tun %s: %w", name, err)
	}
	ifr.SetUint16(unix.IFF_TUN | unix.IFF_NO_PI)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		_ = unix.Close(fd)
		return nil, fmt.Errorf("tun %s: TUNSETIFF: %w", name, err)
	}
	return os.NewFile(uintptr(fd), "/dev/net/tun:"+name), nil
}
