// The Go peer of `make bench`: net/http/httputil's ReverseProxy, the proxy a Go gateway such as seed 001's is built
// on, with nothing added. Usage: go-proxy LISTEN_ADDRESS UPSTREAM_URL
package main

import (
	"io"
	"log"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
)

func main() {
	if len(os.Args) != 3 {
		log.Fatal("usage: go-proxy LISTEN_ADDRESS UPSTREAM_URL")
	}
	upstream, err := url.Parse(os.Args[2])
	if err != nil {
		log.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(upstream)
	transport := http.DefaultTransport.(*http.Transport).Clone()
	// the default keeps 2 idle connections per host: under 100 client connections it would open a new one to the
	// upstream for most requests, which measures the kernel, not the proxy
	transport.MaxIdleConnsPerHost = 256
	proxy.Transport = transport
	// a load generator that stops mid-request is no news: httputil would log each as "proxy error: context canceled"
	proxy.ErrorLog = log.New(io.Discard, "", 0)
	log.Fatal(http.ListenAndServe(os.Args[1], proxy))
}
