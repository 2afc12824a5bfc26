// Package client is the Go client of the xfaas control plane's HTTP API
// (DESIGN.md, "HTTP API"): deploy, list, describe and delete functions,
// invoke them, and list and evict their sessions. The xfaas CLI and the
// benchmark driver call the control plane through it.
//
// Errors the control plane answers come back as *apierror.Error with the
// kind, message and Retry-After it sent, so apierror.KindOf tells a caller
// what happened. Failures to reach it are wrapped with its address.
//
// A Client keeps its connections alive and is safe for concurrent use: make
// one and share it, also under load.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/xfaas/xfaas/controlplane"
	"github.com/xfaas/xfaas/internal/hint"
)

const (
	// DefaultAddr is the control plane's address when none is given: where
	// `xfaas dev` serves.
	DefaultAddr = "http://127.0.0.1:8080"
	// AddrEnv names the environment variable FromEnv reads the address from.
	AddrEnv = "XFAAS_ADDR"
	// TokenEnv names the environment variable FromEnv reads the management
	// token from.
	TokenEnv = "XFAAS_TOKEN"
)

// maxResponseBytes bounds the body of a successful answer the client reads:
// well above the largest invocation output (6 MiB) and any listing.
const maxResponseBytes = 64 << 20

// maxIdleConnsPerHost is how many idle connections a Client keeps to the
// control plane: enough for a load generator's concurrency, so requests
// reuse connections instead of opening new ones (net/http keeps 2).
const maxIdleConnsPerHost = 256

// Client calls one control plane.
type Client struct {
	addr string
	// auth is the Authorization header of management calls, "" without a
	// token.
	auth string
	http *http.Client
}

// Response is the answer to an invocation: the function's output and who
// served it.
type Response struct {
	Body []byte
	// Container, Role ("primary" or "secondary") and Node name where the
	// invocation ran.
	Container, Role, Node string
	// SessionID is the platform's id of the invocation's session.
	SessionID string
}

// New returns a client of the control plane at addr with the management
// token (empty for none). An addr without a scheme means http://; an empty
// addr means DefaultAddr. The token is sent with management calls only:
// Deploy, Delete and Evict.
func New(addr, token string) *Client {
	c := &Client{addr: normalizeAddr(addr), http: &http.Client{Transport: newTransport()}}
	if token != "" {
		c.auth = "Bearer " + token
	}
	return c
}

// FromEnv returns a client of $XFAAS_ADDR (DefaultAddr if unset) with the
// token $XFAAS_TOKEN.
func FromEnv() *Client {
	return New(os.Getenv(AddrEnv), os.Getenv(TokenEnv))
}

// newTransport is net/http's default transport with room for many idle
// connections to one host.
func newTransport() *http.Transport {
	return &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConnsPerHost:   maxIdleConnsPerHost,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
}

// normalizeAddr gives addr a scheme (http:// by default), no trailing
// slash, and scheme and host in lower case: the form the CLI's keystore is
// keyed by, so every spelling of one address finds the same keysets.
func normalizeAddr(addr string) string {
	addr = strings.TrimSpace(addr)
	if addr == "" {
		return DefaultAddr
	}
	if !strings.Contains(addr, "://") {
		addr = "http://" + addr
	}
	addr = strings.TrimRight(addr, "/")
	if u, err := url.Parse(addr); err == nil && u.Host != "" {
		u.Scheme = strings.ToLower(u.Scheme)
		u.Host = strings.ToLower(u.Host)
		addr = u.String()
	}
	return addr
}

// Addr returns the control plane's base URL, normalized: with a scheme and
// without a trailing slash.
func (c *Client) Addr() string { return c.addr }

// CloseIdleConnections closes the client's idle connections.
func (c *Client) CloseIdleConnections() { c.http.CloseIdleConnections() }

// Deploy creates or updates function name from a wasm module and its
// config JSON (nil for the defaults). hintKey is the text of the verify key
// of the function's hint keyset ("" keeps the deployed one); its keyset, the
// sealing half, stays with the caller.
func (c *Client) Deploy(ctx context.Context, name string, module, config []byte, hintKey string) (controlplane.FunctionInfo, error) {
	var info controlplane.FunctionInfo
	body, contentType, err := deployForm(name, module, config, hintKey)
	if err != nil {
		return info, err
	}
	req, err := c.newRequest(ctx, http.MethodPut, functionPath(name), bytes.NewReader(body))
	if err != nil {
		return info, err
	}
	req.Header.Set("Content-Type", contentType)
	return info, c.doJSON(c.managed(req), &info)
}

// deployForm encodes the multipart form of a deploy: parts module, config
// and hint_key.
func deployForm(name string, module, config []byte, hintKey string) (body []byte, contentType string, err error) {
	var buf bytes.Buffer
	buf.Grow(len(module) + len(config) + len(hintKey) + 1024)
	mw := multipart.NewWriter(&buf)
	part, err := mw.CreateFormFile("module", name+".wasm")
	if err == nil {
		_, err = part.Write(module)
	}
	if err == nil && len(config) > 0 {
		err = mw.WriteField("config", string(config))
	}
	if err == nil && hintKey != "" {
		err = mw.WriteField("hint_key", hintKey)
	}
	if err == nil {
		err = mw.Close()
	}
	if err != nil {
		return nil, "", fmt.Errorf("deploy form: %w", err)
	}
	return buf.Bytes(), mw.FormDataContentType(), nil
}

// Functions lists the deployed functions, sorted by name.
func (c *Client) Functions(ctx context.Context) ([]controlplane.FunctionInfo, error) {
	var list []controlplane.FunctionInfo
	return list, c.getJSON(ctx, "/v1/functions", &list)
}

// Function describes function name.
func (c *Client) Function(ctx context.Context, name string) (controlplane.FunctionInfo, error) {
	var info controlplane.FunctionInfo
	return info, c.getJSON(ctx, functionPath(name), &info)
}

// Delete removes function name.
func (c *Client) Delete(ctx context.Context, name string) error {
	return c.delete(ctx, functionPath(name))
}

// Invoke calls function name with body as its input. hintToken is a sealed
// session hint (see hint.Keyset.Seal), or "" for the function's default
// session.
func (c *Client) Invoke(ctx context.Context, name, hintToken string, body []byte) (Response, error) {
	req, err := c.newRequest(ctx, http.MethodPost, functionPath(name)+"/invoke", bytes.NewReader(body))
	if err != nil {
		return Response{}, err
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	if hintToken != "" {
		req.Header.Set(hint.Header, hintToken)
	}
	resp, err := c.send(req)
	if err != nil {
		return Response{}, err
	}
	out, err := c.readBody(resp)
	if err != nil {
		return Response{}, err
	}
	h := resp.Header
	return Response{Body: out, Container: h.Get(controlplane.HeaderContainer), Role: h.Get(controlplane.HeaderRole),
		Node: h.Get(controlplane.HeaderNode), SessionID: h.Get(controlplane.HeaderSessionID)}, nil
}

// Sessions lists the session namespaces of function name.
func (c *Client) Sessions(ctx context.Context, name string) ([]controlplane.SessionInfo, error) {
	var list []controlplane.SessionInfo
	return list, c.getJSON(ctx, functionPath(name)+"/sessions", &list)
}

// Evict checkpoints session sessionID of function name now and releases its
// containers.
func (c *Client) Evict(ctx context.Context, name, sessionID string) (controlplane.CheckpointReply, error) {
	return c.sessionCall(ctx, http.MethodDelete, functionPath(name)+"/sessions/"+url.PathEscape(sessionID))
}

// Checkpoint checkpoints an active session without stopping it.
func (c *Client) Checkpoint(ctx context.Context, name, sessionID string) (controlplane.CheckpointReply, error) {
	return c.sessionCall(ctx, http.MethodPost, functionPath(name)+"/sessions/"+url.PathEscape(sessionID)+"/checkpoint")
}

func (c *Client) sessionCall(ctx context.Context, method, path string) (controlplane.CheckpointReply, error) {
	var reply controlplane.CheckpointReply
	req, err := c.newRequest(ctx, method, path, nil)
	if err != nil {
		return reply, err
	}
	return reply, c.doJSON(c.managed(req), &reply)
}

func functionPath(name string) string { return "/v1/functions/" + url.PathEscape(name) }

func (c *Client) newRequest(ctx context.Context, method, path string, body io.Reader) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.addr+path, body)
	if err != nil {
		return nil, fmt.Errorf("control plane %s: %w", c.addr, err)
	}
	return req, nil
}

// managed adds the management token to req.
func (c *Client) managed(req *http.Request) *http.Request {
	if c.auth != "" {
		req.Header.Set("Authorization", c.auth)
	}
	return req
}

// send sends req and returns the response to a 2xx answer; any other answer
// is returned as its *apierror.Error, its body read and closed.
func (c *Client) send(req *http.Request) (*http.Response, error) {
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, c.transportError(err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		defer resp.Body.Close()
		return nil, decodeError(resp)
	}
	return resp, nil
}

// readBody reads and closes the body of resp. Reading exactly the announced
// length in one buffer sees the end of the body with the last bytes, which
// lets the connection go back to the pool.
func (c *Client) readBody(resp *http.Response) ([]byte, error) {
	defer resp.Body.Close()
	if n := resp.ContentLength; n >= 0 && n <= maxResponseBytes {
		buf := make([]byte, n)
		if _, err := io.ReadFull(resp.Body, buf); err != nil {
			return nil, c.transportError(err)
		}
		return buf, nil
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes+1))
	if err != nil {
		return nil, c.transportError(err)
	}
	if len(data) > maxResponseBytes {
		return nil, fmt.Errorf("control plane %s: answer exceeds %d bytes", c.addr, maxResponseBytes)
	}
	return data, nil
}

func (c *Client) getJSON(ctx context.Context, path string, v any) error {
	req, err := c.newRequest(ctx, http.MethodGet, path, nil)
	if err != nil {
		return err
	}
	return c.doJSON(req, v)
}

func (c *Client) delete(ctx context.Context, path string) error {
	req, err := c.newRequest(ctx, http.MethodDelete, path, nil)
	if err != nil {
		return err
	}
	return c.doJSON(c.managed(req), nil)
}

// doJSON sends req and decodes the answer into v; a nil v reads and drops
// the answer.
func (c *Client) doJSON(req *http.Request, v any) error {
	resp, err := c.send(req)
	if err != nil {
		return err
	}
	data, err := c.readBody(resp)
	if err != nil || v == nil {
		return err
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("control plane %s: %s %s: undecodable answer: %w", c.addr, req.Method, req.URL.Path, err)
	}
	return nil
}

// transportError names the control plane in a failure to reach it. The
// *url.Error that net/http returns repeats the whole URL; its cause is
// enough.
func (c *Client) transportError(err error) error {
	if ue, ok := errors.AsType[*url.Error](err); ok {
		err = ue.Err
	}
	return fmt.Errorf("control plane %s: %w", c.addr, err)
}
