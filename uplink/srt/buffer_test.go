package srt

import (
	"fmt"
	"net"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"tandem/scripts/testenv"
	"testing"
)

// udpReceiveBuffer reads the kernel's receive buffer of the UDP socket on
// port as `ss` reports it (skmem rb: twice what was asked, after capping).
func udpReceiveBuffer(t *testing.T, port int) int {
	t.Helper()
	ss := testenv.Need(t, "ss") // iproute2
	out, err := exec.Command(ss, "-uanm", fmt.Sprintf("sport = :%d", port)).CombinedOutput()
	if err != nil {
		t.Fatalf("ss: %v: %s", err, out)
	}
	m := regexp.MustCompile(`rb(\d+)`).FindStringSubmatch(string(out))
	if m == nil {
		t.Fatalf("ss shows no receive buffer for UDP port %d:\n%s", port, out)
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

func TestListenerAsksForItsUDPBuffer(t *testing.T) {
	limit, err := KernelBufferCap()
	if err != nil {
		t.Fatal(err)
	}
	for _, asked := range []int{0, 3 << 20} {
		l, err := Listen("127.0.0.1:0", ListenConfig{Options: Options{UDPBuffer: asked}})
		if err != nil {
			t.Fatalf("Listen with UDPBuffer %d: %v", asked, err)
		}
		port := l.Addr().(*net.UDPAddr).Port
		got := udpReceiveBuffer(t, port)
		l.Close()
		want := asked
		if want == 0 {
			want = defaultUDPBuffer
		}
		want = 2 * min(want, limit) // the kernel doubles what it grants
		if got != want {
			t.Errorf("UDPBuffer %d: the socket's receive buffer is %d bytes, want %d (rmem_max %d)", asked, got, want, limit)
		}
	}
	if _, err := Listen("127.0.0.1:0", ListenConfig{Options: Options{UDPBuffer: -1}}); err == nil || !strings.Contains(err.Error(), "UDPBuffer") {
		t.Errorf("a negative UDPBuffer gave %v, want an error naming UDPBuffer", err)
	}
}
