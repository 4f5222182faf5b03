package slot

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// ContainerNames asks the first nameserver of /etc/resolv.conf (Docker's
// embedded DNS, 127.0.0.11, in a container) for the names of ip. It sends
// the PTR query itself because the standard library's resolver answers
// from /etc/hosts first, where Docker writes only the container ID.
func ContainerNames(ctx context.Context, ip string) ([]string, error) {
	server, err := nameserver("/etc/resolv.conf")
	if err != nil {
		return nil, err
	}
	return PTR(ctx, net.JoinHostPort(server, "53"), ip)
}

// PTR asks the DNS server at server (host:port, UDP) for the names of ip.
func PTR(ctx context.Context, server, ip string) ([]string, error) {
	arpa, err := reverseName(ip)
	if err != nil {
		return nil, err
	}
	name, err := dnsmessage.NewName(arpa)
	if err != nil {
		return nil, err
	}
	id := uint16(time.Now().UnixNano())
	q := dnsmessage.Message{
		Header:    dnsmessage.Header{ID: id, RecursionDesired: true},
		Questions: []dnsmessage.Question{{Name: name, Type: dnsmessage.TypePTR, Class: dnsmessage.ClassINET}},
	}
	packet, err := q.Pack()
	if err != nil {
		return nil, err
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "udp", server)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	if _, err := conn.Write(packet); err != nil {
		return nil, err
	}
	buf := make([]byte, 1500)
	for {
		n, err := conn.Read(buf)
		if err != nil {
			return nil, err
		}
		var m dnsmessage.Message
		if m.Unpack(buf[:n]) != nil || m.ID != id || !m.Response {
			continue // not the answer to this query
		}
		var names []string
		for _, a := range m.Answers {
			if ptr, ok := a.Body.(*dnsmessage.PTRResource); ok {
				names = append(names, ptr.PTR.String())
			}
		}
		return names, nil
	}
}

// nameserver is the first nameserver line of a resolv.conf.
func nameserver(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fields := strings.Fields(sc.Text()); len(fields) >= 2 && fields[0] == "nameserver" {
			return fields[1], nil
		}
	}
	return "", fmt.Errorf("%s: no nameserver", path)
}

// reverseName is the in-addr.arpa name of an IPv4 address.
func reverseName(ip string) (string, error) {
	v4 := net.ParseIP(ip).To4()
	if v4 == nil {
		return "", errors.New("not an IPv4 address: " + ip)
	}
	return fmt.Sprintf("%d.%d.%d.%d.in-addr.arpa.", v4[3], v4[2], v4[1], v4[0]), nil
}
