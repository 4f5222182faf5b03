package cli

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestMain fails the package when goroutines outlive the tests: every
// node, client pool and progress line must have been stopped.
func TestMain(m *testing.M) {
	before := runtime.NumGoroutine()
	code := m.Run()
	if code == 0 {
		if err := settled(before, 5*time.Second); err != nil {
			fmt.Fprintln(os.Stderr, err)
			code = 1
		}
	}
	os.Exit(code)
}

// settled waits for the goroutine count to drop back to n.
func settled(n int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		if runtime.NumGoroutine() <= n {
			return nil
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			stacks := string(buf[:runtime.Stack(buf, true)])
			return fmt.Errorf("goroutines leaked: %d, before the tests %d:\n%s", runtime.NumGoroutine(), n, strings.TrimSpace(stacks))
		}
		time.Sleep(20 * time.Millisecond) // polling a count: there is nothing to wait on
	}
}
