// toolbox is the test image of the real node: one static program whose subcommands play a web server, an
// HTTP client, a DNS client, an in-cluster API client and a logger, so that node tests need no distribution
// image.
//
//	toolbox serve ADDR TEXT [READY_AFTER]  serve TEXT on / and 200 on /healthz (503 until READY_AFTER elapsed)
//	toolbox get URL [TIMEOUT]              print the body of URL, retrying until TIMEOUT (default 60s)
//	toolbox lookup NAME [TIMEOUT]          print NAME's addresses, retrying until TIMEOUT
//	toolbox kube-list RESOURCE             list RESOURCE (e.g. configmaps) of the pod's namespace through
//	                                       the kubernetes Service, as the pod's service account
//	toolbox print LINE...                  print each LINE, then exit
//	toolbox sleep                          block until SIGTERM
package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

const saDir = "/var/run/secrets/kubernetes.io/serviceaccount"

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "toolbox: "+format+"\n", args...)
	os.Exit(1)
}

func duration(args []string, i int, def time.Duration) time.Duration {
	if len(args) <= i {
		return def
	}
	d, err := time.ParseDuration(args[i])
	if err != nil {
		fail("bad duration %q: %v", args[i], err)
	}
	return d
}

func retry(timeout time.Duration, what string, f func() error) {
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			fail("%s: %v", what, err)
		}
		fmt.Fprintf(os.Stderr, "toolbox: %s: %v (retrying)\n", what, err)
		time.Sleep(500 * time.Millisecond)
	}
}

func serve(args []string) {
	if len(args) < 2 {
		fail("usage: serve ADDR TEXT [READY_AFTER]")
	}
	start, readyAfter := time.Now(), duration(args, 2, 0)
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		if time.Since(start) < readyAfter {
			http.Error(w, "not ready yet", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, args[1]) })
	fmt.Printf("serving on %s\n", args[0])
	if err := http.ListenAndServe(args[0], mux); err != nil {
		fail("serve: %v", err)
	}
}

func get(args []string) {
	if len(args) < 1 {
		fail("usage: get URL [TIMEOUT]")
	}
	client := &http.Client{Timeout: 5 * time.Second}
	retry(duration(args, 1, 60*time.Second), "GET "+args[0], func() error {
		resp, err := client.Get(args[0])
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("HTTP %d: %s", resp.StatusCode, body)
		}
		fmt.Println(string(body))
		return nil
	})
}

func lookup(args []string) {
	if len(args) < 1 {
		fail("usage: lookup NAME [TIMEOUT]")
	}
	retry(duration(args, 1, 60*time.Second), "lookup "+args[0], func() error {
		addrs, err := net.LookupHost(args[0])
		if err != nil {
			return err
		}
		fmt.Println(strings.Join(addrs, " "))
		return nil
	})
}

func kubeList(args []string) {
	if len(args) < 1 {
		fail("usage: kube-list RESOURCE")
	}
	read := func(name string) []byte {
		b, err := os.ReadFile(saDir + "/" + name)
		if err != nil {
			fail("service account: %v", err)
		}
		return b
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(read("ca.crt")) {
		fail("service account: no certificate in ca.crt")
	}
	host, port := os.Getenv("KUBERNETES_SERVICE_HOST"), os.Getenv("KUBERNETES_SERVICE_PORT")
	if host == "" || port == "" {
		fail("KUBERNETES_SERVICE_HOST/PORT are not set")
	}
	url := fmt.Sprintf("https://%s/api/v1/namespaces/%s/%s", net.JoinHostPort(host, port),
		strings.TrimSpace(string(read("namespace"))), args[0])
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "kubernetes.default.svc"}}}
	retry(60*time.Second, "GET "+url, func() error {
		req, err := http.NewRequest(http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(read("token"))))
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("HTTP %d: %s", resp.StatusCode, body)
		}
		var list struct {
			Items []struct {
				Metadata struct {
					Name string `json:"name"`
				} `json:"metadata"`
			} `json:"items"`
		}
		if err := json.Unmarshal(body, &list); err != nil {
			return err
		}
		for _, item := range list.Items {
			fmt.Println(item.Metadata.Name)
		}
		return nil
	})
}

func main() {
	if len(os.Args) < 2 {
		fail("usage: toolbox serve|get|lookup|kube-list|print|sleep ...")
	}
	args := os.Args[2:]
	switch os.Args[1] {
	case "serve":
		serve(args)
	case "get":
		get(args)
	case "lookup":
		lookup(args)
	case "kube-list":
		kubeList(args)
	case "print":
		for _, line := range args {
			fmt.Println(line)
		}
	case "sleep":
		sigs := make(chan os.Signal, 1)
		signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
		<-sigs
	default:
		fail("unknown subcommand %q", os.Args[1])
	}
}
