package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestHelp(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string // in stdout or stderr
	}{
		{[]string{"-h"}, "cluster tools"},
		{[]string{"--help"}, "cluster tools"},
		{[]string{"help"}, "cluster tools"},
		{[]string{"node", "-h"}, "-ReplicationFactor"},
	} {
		var out, errb bytes.Buffer
		code := run(tc.args, func(string) string { return "" }, strings.NewReader(""), &out, &errb)
		if code != 0 || !strings.Contains(out.String()+errb.String(), tc.want) {
			t.Errorf("goblocks %v: exit %d, output lacks %q:\n%s%s", tc.args, code, tc.want, out.String(), errb.String())
		}
	}
}
