package cli

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// progress redraws one status line on a terminal with a carriage return
// until finish. A nil *progress (progress off) does nothing.
type progress struct {
	w      io.Writer
	render func(elapsed time.Duration) string
	start  time.Time
	stop   chan struct{}
	done   chan struct{}
	width  int // of the last line drawn, to blank out what is left of it
}

// progressInterval is how often the line is redrawn.
const progressInterval = 200 * time.Millisecond

// startProgress draws render's line every progressInterval while on; the
// caller must call finish. render is called from another goroutine and
// must be safe for that (read atomics).
func startProgress(w io.Writer, on bool, render func(elapsed time.Duration) string) *progress {
	if !on {
		return nil
	}
	p := &progress{w: w, render: render, start: time.Now(), stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		t := time.NewTicker(progressInterval)
		defer t.Stop()
		for {
			p.draw()
			select {
			case <-p.stop:
				return
			case <-t.C:
			}
		}
	}()
	return p
}

func (p *progress) draw() {
	line := p.render(time.Since(p.start))
	pad := max(0, p.width-len(line))
	p.width = len(line)
	fmt.Fprintf(p.w, "\r%s%s", line, strings.Repeat(" ", pad))
}

// finish stops the redraws, draws the final state and ends the line.
func (p *progress) finish() {
	if p == nil {
		return
	}
	close(p.stop)
	<-p.done
	p.draw()
	fmt.Fprintln(p.w)
}

// bar is a text progress bar of width cells for frac in [0, 1].
func bar(frac float64, width int) string {
	frac = min(max(frac, 0), 1)
	full := int(frac * float64(width))
	s := strings.Repeat("=", full)
	if full < width {
		s += ">" + strings.Repeat(" ", width-full-1)
	}
	return "[" + s + "]"
}
