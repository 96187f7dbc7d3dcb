package ui

import (
	"context"
	"fmt"
	"log"
	"net"
	"strconv"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
)

// Config is what Start needs to serve the UI of a cluster.
type Config struct {
	// REST are the credentials (the user's, in taskerctl). Its Timeout is not applied to the watches.
	REST   *rest.Config
	Scheme *runtime.Scheme
	// Namespace is the one namespace watched; "" watches all.
	Namespace string
	// Database reads step details; nil without a database URL.
	Database Database
	// Address is where to listen (host:port; port 0 picks a free one).
	Address  string
	ErrorLog *log.Logger
}

// Running is a UI being served.
type Running struct {
	// URL is the address to open in a browser.
	URL  string
	done chan error
}

// Wait returns once the UI has stopped (its context done), with the error that stopped it, if any.
func (r *Running) Wait() error { return <-r.done }

// Start watches the cluster, listens on the address and serves the UI until ctx is done. It returns once the
// watch has synced and the listener is open, so that the URL works when printed. A UI listening on a loopback
// address answers only requests for that address (or localhost), against DNS rebinding.
func Start(ctx context.Context, c Config) (*Running, error) {
	rc := rest.CopyConfig(c.REST)
	rc.Timeout = 0
	kube, err := NewKubeCluster(ctx, rc, c.Scheme, c.Namespace)
	if err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", c.Address)
	if err != nil {
		return nil, err
	}
	addr := l.Addr().(*net.TCPAddr)
	port := strconv.Itoa(addr.Port)
	opts := Options{Cluster: kube, Database: c.Database, ErrorLog: c.ErrorLog}
	host := addr.IP.String()
	if addr.IP.IsLoopback() {
		opts.AllowedHosts = []string{net.JoinHostPort(host, port), "localhost:" + port, "127.0.0.1:" + port, "[::1]:" + port}
	} else if addr.IP.IsUnspecified() {
		host = "127.0.0.1"
	}
	srv := New(opts)
	if err := kube.Start(ctx, srv.Observe); err != nil {
		_ = l.Close()
		return nil, err
	}
	r := &Running{URL: fmt.Sprintf("http://%s/", net.JoinHostPort(host, port)), done: make(chan error, 1)}
	go func() { r.done <- srv.Serve(ctx, l) }()
	return r, nil
}
