package ui

import (
	"compress/gzip"
	"io"
	"net/http"
	"strings"
	"sync"
)

var gzipWriters = sync.Pool{New: func() any { w, _ := gzip.NewWriterLevel(io.Discard, gzip.BestSpeed); return w }}

// compress gzips responses for clients that accept it (a 1,000-step graph is mostly repeated SVG markup), except
// the event stream, which must reach the page event by event.
func compress(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Add("Vary", "Accept-Encoding")
		if r.URL.Path == "/events" || !strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
			next.ServeHTTP(w, r)
			return
		}
		gz := gzipWriters.Get().(*gzip.Writer)
		defer gzipWriters.Put(gz)
		gz.Reset(w)
		w.Header().Set("Content-Encoding", "gzip")
		next.ServeHTTP(&gzipResponse{ResponseWriter: w, w: gz}, r)
		_ = gz.Close()
	})
}

type gzipResponse struct {
	http.ResponseWriter
	w           io.Writer
	wroteHeader bool
}

func (g *gzipResponse) Write(p []byte) (int, error) {
	if !g.wroteHeader {
		g.WriteHeader(http.StatusOK)
	}
	return g.w.Write(p)
}

// WriteHeader drops the Content-Length a handler may have set: it is the uncompressed one.
func (g *gzipResponse) WriteHeader(code int) {
	g.wroteHeader = true
	g.Header().Del("Content-Length")
	g.ResponseWriter.WriteHeader(code)
}
