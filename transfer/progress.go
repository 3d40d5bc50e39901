package transfer

import (
	"sync"
	"time"
)

// ThrottleProgress returns a Progress function that calls fn at most once
// per interval, and always when done reaches total. It is safe for
// concurrent use; fn is never called concurrently with itself.
func ThrottleProgress(interval time.Duration, fn func(done, total int64)) func(done, total int64) {
	if fn == nil {
		return nil
	}
	var (
		mu   sync.Mutex
		last time.Time
	)
	return func(done, total int64) {
		mu.Lock()
		defer mu.Unlock()
		now := time.Now()
		if done < total && now.Sub(last) < interval {
			return
		}
		last = now
		fn(done, total)
	}
}
