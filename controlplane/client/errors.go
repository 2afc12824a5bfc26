package client

import (
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/xfaas/xfaas/controlplane"
	"github.com/xfaas/xfaas/internal/apierror"
)

// maxErrorBytes bounds how much of an error answer is read.
const maxErrorBytes = 64 << 10

// decodeError turns a non-2xx answer into an *apierror.Error: the kind and
// message of its ErrorBody, or, for an answer that is not one (from a proxy
// in front of the control plane, say), the kind its status maps to and the
// start of its body.
func decodeError(resp *http.Response) error {
	data, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBytes))
	e := &apierror.Error{Kind: kindOfStatus(resp.StatusCode), RetryAfter: retryAfter(resp.Header.Get("Retry-After"), time.Now())}
	var body controlplane.ErrorBody
	if json.Unmarshal(data, &body) == nil && body.Kind != "" {
		e.Kind, e.Message = apierror.Kind(body.Kind), body.Error
	}
	if e.Message == "" {
		e.Message = "HTTP " + resp.Status
		if text := snippet(data); text != "" {
			e.Message += ": " + text
		}
	}
	return e
}

// kindOfStatus is the kind an answer without an ErrorBody stands for.
func kindOfStatus(status int) apierror.Kind {
	switch status {
	case http.StatusBadRequest:
		return apierror.BadRequest
	case http.StatusUnauthorized:
		return apierror.Unauthorized
	case http.StatusForbidden:
		return apierror.BadHint
	case http.StatusNotFound:
		return apierror.NotFound
	case http.StatusConflict:
		return apierror.Conflict
	case http.StatusRequestEntityTooLarge:
		return apierror.TooLarge
	case http.StatusTooManyRequests:
		return apierror.Overloaded
	case http.StatusServiceUnavailable:
		return apierror.Unavailable
	case http.StatusGatewayTimeout:
		return apierror.Timeout
	}
	return apierror.Internal
}

// retryAfter parses a Retry-After header, seconds or an HTTP date, into
// whole seconds from now (at least 1 when the header asks for a wait); 0
// when absent or unreadable.
func retryAfter(header string, now time.Time) int {
	if header == "" {
		return 0
	}
	if s, err := strconv.Atoi(strings.TrimSpace(header)); err == nil {
		return max(s, 0)
	}
	if t, err := http.ParseTime(header); err == nil {
		return max(int((t.Sub(now)+time.Second-1)/time.Second), 1)
	}
	return 0
}

// snippet is the start of an unexpected answer's body, on one line.
func snippet(data []byte) string {
	const limit = 200
	text := strings.Join(strings.Fields(string(data[:min(len(data), 4*limit)])), " ")
	if len(text) > limit {
		text = strings.ToValidUTF8(text[:limit], "") + "..."
	}
	return text
}
