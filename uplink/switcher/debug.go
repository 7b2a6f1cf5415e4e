package switcher

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
)

// startDebug serves the Go profiler on cfg.DebugAddr until ctx ends.
func (s *Server) startDebug(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.cfg.DebugAddr)
	if err != nil {
		return fmt.Errorf("listen debug %s: %w", s.cfg.DebugAddr, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	srv := &http.Server{Handler: mux}
	s.wg.Add(2)
	go func() {
		defer s.wg.Done()
		srv.Serve(ln)
	}()
	go func() {
		defer s.wg.Done()
		<-ctx.Done()
		srv.Close()
	}()
	s.log.Info("profiler listening", "addr", ln.Addr().String())
	return nil
}
