package controlplane

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"io"
	"mime/multipart"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/xfaas/xfaas/internal/apierror"
	"github.com/xfaas/xfaas/internal/fnconfig"
	"github.com/xfaas/xfaas/internal/hint"
	"github.com/xfaas/xfaas/proxy"
)

// Response headers naming who served an invocation.
const (
	HeaderContainer = "X-Xfaas-Container"
	HeaderRole      = "X-Xfaas-Role"
	HeaderNode      = "X-Xfaas-Node"
	HeaderSessionID = "X-Xfaas-Session-Id"
)

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.Handle("GET /metrics", s.metricsHandler())
	mux.HandleFunc("GET /v1/functions", s.listFunctions)
	mux.HandleFunc("PUT /v1/functions/{name}", s.managed(s.deployFunction))
	mux.HandleFunc("GET /v1/functions/{name}", s.getFunction)
	mux.HandleFunc("DELETE /v1/functions/{name}", s.managed(s.deleteFunction))
	mux.HandleFunc("POST /v1/functions/{name}/invoke", s.invoke)
	mux.HandleFunc("GET /v1/functions/{name}/sessions", s.listSessions)
	mux.HandleFunc("DELETE /v1/functions/{name}/sessions/{id}", s.managed(s.evictSession))
	mux.HandleFunc("POST /v1/functions/{name}/sessions/{id}/checkpoint", s.managed(s.checkpointSession))
	return mux
}

// managed guards a management call with the configured token.
func (s *Server) managed(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if s.cfg.Token != "" {
			got := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
			if subtle.ConstantTimeCompare([]byte(got), []byte(s.cfg.Token)) != 1 {
				writeError(w, apierror.New(apierror.Unauthorized, "this call needs the management token (Authorization: Bearer ...)"))
				return
			}
		}
		h(w, r)
	}
}

// FunctionInfo is a function as the API shows it: no secrets.
type FunctionInfo struct {
	Name    string          `json:"name"`
	Version uint64          `json:"version"`
	Digest  string          `json:"digest"`
	Size    int             `json:"size"`
	Config  fnconfig.Config `json:"config"`
	// Hints is how sessions are named: "sealed" (clients seal labels with
	// the keyset whose id is HintKeyID), "hook", or "none" (only the
	// default session).
	Hints     string    `json:"hints"`
	HintKeyID string    `json:"hint_key_id,omitempty"`
	Created   time.Time `json:"created"`
	Updated   time.Time `json:"updated"`
}

func infoOf(f *Function) FunctionInfo {
	info := FunctionInfo{Name: f.Name, Version: f.Version, Digest: f.Digest, Size: f.Size, Config: f.Config,
		Hints: "none", Created: f.Created, Updated: f.Updated}
	switch {
	case f.Config.Hook != "":
		info.Hints = "hook"
	case f.VerifyKey != "":
		info.Hints, info.HintKeyID = "sealed", f.verify.ID()
	}
	return info
}

func (s *Server) lookup(name string) (*Function, error) {
	if f, ok := s.fns.Lookup(name); ok {
		return f, nil
	}
	return nil, apierror.New(apierror.NotFound, "no function %q", name)
}

func (s *Server) listFunctions(w http.ResponseWriter, r *http.Request) {
	out := []FunctionInfo{}
	for _, f := range s.fns.List() {
		out = append(out, infoOf(f))
	}
	writeJSON(w, http.StatusOK, out)
}

// Function describes function name, as GET /v1/functions/{name} does.
func (s *Server) Function(name string) (FunctionInfo, error) {
	f, err := s.lookup(name)
	if err != nil {
		return FunctionInfo{}, err
	}
	return infoOf(f), nil
}

func (s *Server) getFunction(w http.ResponseWriter, r *http.Request) {
	info, err := s.Function(r.PathValue("name"))
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, info)
}

// deployFunction creates or updates a function from a multipart form:
// "module" (the wasm file), optional "config" (JSON) and optional
// "hint_key" (the verify key of the function's hint keyset).
func (s *Server) deployFunction(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	form, err := s.readDeployForm(w, r)
	if err != nil {
		writeError(w, err)
		return
	}
	_, existed := s.fns.Lookup(name)
	info, err := s.Deploy(r.Context(), name, form.module, form.config, form.hintKey)
	if err != nil {
		writeError(w, err)
		return
	}
	status := http.StatusCreated
	if existed {
		status = http.StatusOK
	}
	writeJSON(w, status, info)
}

// Deploy validates and stores a function: its module (compiled here, so a
// bad module is refused with the reason and the node's compilation cache is
// warm), its config JSON, and the verify key of its hint keyset ("" keeps
// the current one).
func (s *Server) Deploy(ctx context.Context, name string, module, config []byte, hintKey string) (FunctionInfo, error) {
	f, err := s.deploy(ctx, name, module, config, hintKey)
	if err != nil {
		return FunctionInfo{}, err
	}
	return infoOf(f), nil
}

func (s *Server) deploy(ctx context.Context, name string, module, config []byte, hintKey string) (*Function, error) {
	if !fnconfig.ValidFunctionName(name) {
		return nil, apierror.New(apierror.BadRequest, "function names are 1-63 characters of a-z, 0-9, _ and -, starting with a letter or digit")
	}
	if len(module) > s.cfg.MaxModuleBytes {
		return nil, apierror.New(apierror.TooLarge, "module of %d bytes exceeds %d", len(module), s.cfg.MaxModuleBytes)
	}
	cfg, err := fnconfig.Parse(config)
	if err != nil {
		return nil, apierror.New(apierror.BadRequest, "%v", err)
	}
	if err := s.checkHook(name, cfg); err != nil {
		return nil, err
	}
	if hintKey != "" {
		if _, err := hint.ParseVerifyKey(hintKey); err != nil {
			return nil, apierror.New(apierror.BadRequest, "hint_key: %v", err)
		}
	}
	// The compiled module is only checked here: the validator runs
	// nothing, so it is released at once (and stays in the on-disk cache).
	m, err := s.validator.Compile(ctx, module)
	if err != nil {
		return nil, err
	}
	defer m.Close(ctx)
	if need := m.MemoryMB(); need > cfg.WorkerMemoryMB {
		return nil, apierror.New(apierror.BadRequest, "invalid module: it starts with %d MiB of linear memory, and worker_memory_mb is %d", need, cfg.WorkerMemoryMB)
	}
	f, err := s.fns.Deploy(ctx, name, module, m.Digest, cfg, hintKey)
	if err != nil {
		return nil, err
	}
	s.log.Info("function deployed", "function", name, "version", f.Version, "digest", f.Digest, "compile_ms", m.CompileTime.Milliseconds())
	return f, nil
}

type deployForm struct {
	module  []byte
	config  []byte
	hintKey string
}

func (s *Server) readDeployForm(w http.ResponseWriter, r *http.Request) (deployForm, error) {
	var form deployForm
	r.Body = http.MaxBytesReader(w, r.Body, int64(s.cfg.MaxModuleBytes)+1<<20)
	mr, err := r.MultipartReader()
	if err != nil {
		return form, apierror.New(apierror.BadRequest, "deploy needs a multipart form with a module part: %v", err)
	}
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return form, bodyError(err, "module")
		}
		if err := s.readPart(part, &form); err != nil {
			return form, err
		}
	}
	if len(form.module) == 0 {
		return form, apierror.New(apierror.BadRequest, "the form has no module part (multipart field \"module\")")
	}
	return form, nil
}

func (s *Server) readPart(part *multipart.Part, form *deployForm) error {
	defer part.Close()
	limit := int64(64 << 10)
	if part.FormName() == "module" {
		limit = int64(s.cfg.MaxModuleBytes)
	}
	data, err := io.ReadAll(io.LimitReader(part, limit+1))
	if err != nil {
		return bodyError(err, part.FormName())
	}
	if int64(len(data)) > limit {
		return apierror.New(apierror.TooLarge, "form part %q exceeds %d bytes", part.FormName(), limit)
	}
	switch part.FormName() {
	case "module":
		form.module = data
	case "config":
		form.config = data
	case "hint_key":
		form.hintKey = strings.TrimSpace(string(data))
	default:
		return apierror.New(apierror.BadRequest, "unknown form part %q (want module, config, hint_key)", part.FormName())
	}
	return nil
}

// bodyError maps a failed body read: past the limit is 413.
func bodyError(err error, what string) error {
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		return apierror.New(apierror.TooLarge, "request body exceeds %d bytes", tooLarge.Limit)
	}
	return apierror.New(apierror.BadRequest, "reading %s: %v", what, err)
}

func (s *Server) checkHook(name string, cfg fnconfig.Config) error {
	if cfg.Hook == "" {
		return nil
	}
	if cfg.Hook == name {
		return apierror.New(apierror.BadRequest, "a function cannot be its own hook")
	}
	if _, ok := s.fns.Lookup(cfg.Hook); !ok {
		return apierror.New(apierror.BadRequest, "hook function %q is not deployed", cfg.Hook)
	}
	return nil
}

// checkNoHookUser refuses to delete a function that another names as its
// hook: every invoke of that one would fail. (A deploy naming it on
// another replica at the same moment is not seen; its invokes then fail
// with "hook function is not deployed" until it is deployed again.)
func (s *Server) checkNoHookUser(name string) error {
	var users []string
	for _, f := range s.fns.List() {
		if f.Config.Hook == name {
			users = append(users, f.Name)
		}
	}
	if len(users) == 0 {
		return nil
	}
	them := "it"
	if len(users) > 1 {
		them = "them"
	}
	return apierror.New(apierror.Conflict, "function %s is the hook of %s; deploy %s without it first", name, strings.Join(users, ", "), them)
}

func (s *Server) deleteFunction(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if err := s.checkNoHookUser(name); err != nil {
		writeError(w, err)
		return
	}
	if err := s.fns.Delete(r.Context(), name); err != nil {
		writeError(w, err)
		return
	}
	s.sched.EvictFunction(name)
	ctx, cancel := withTimeout(r.Context())
	defer cancel()
	if err := s.ckpts.remove(ctx, name); err != nil {
		s.log.Warn("failed to remove the checkpoints of a deleted function", "function", name, "error", err)
	}
	s.log.Info("function deleted", "function", name)
	writeJSON(w, http.StatusOK, map[string]string{"deleted": name})
}

func (s *Server) invoke(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	f, err := s.lookup(r.PathValue("name"))
	if err != nil {
		writeError(w, err)
		return
	}
	res, err := s.invokeFunction(w, r, f)
	kind := "ok"
	if err != nil {
		kind = string(apierror.KindOf(err))
	}
	s.m.invocations.WithLabelValues(f.Name, kind).Inc()
	s.m.latency.WithLabelValues(f.Name).Observe(time.Since(start).Seconds())
	if err != nil {
		writeError(w, err)
		return
	}
	h := w.Header()
	h.Set(HeaderContainer, res.Container)
	h.Set(HeaderRole, string(res.Role))
	h.Set(HeaderNode, res.Node)
	h.Set("Content-Type", "application/octet-stream")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(res.Output)
}

func (s *Server) invokeFunction(w http.ResponseWriter, r *http.Request, f *Function) (Result, error) {
	input, err := io.ReadAll(http.MaxBytesReader(w, r.Body, int64(s.cfg.MaxInputBytes)))
	if err != nil {
		return Result{}, bodyError(err, "the body")
	}
	// The container stops the guest at timeout_ms; the extra second lets
	// its answer arrive before this side gives up.
	ctx, cancel := context.WithTimeout(r.Context(), f.Config.Timeout()+time.Second)
	defer cancel()
	session, err := s.sessionOf(ctx, f, r, input)
	if err != nil {
		return Result{}, err
	}
	w.Header().Set(HeaderSessionID, string(session))
	return s.sched.Invoke(ctx, f, string(session), input)
}

// sessionOf names the request's session: from its sealed hint, or from
// the label the function's hook computes, or the default session.
func (s *Server) sessionOf(ctx context.Context, f *Function, r *http.Request, input []byte) (hint.SessionID, error) {
	if f.Config.Hook != "" {
		label, err := s.hooks.label(ctx, f.Config.Hook, input, r.Header)
		if err != nil {
			return "", err
		}
		token, err := f.seal.Seal(f.Name, label)
		if err != nil {
			return "", apierror.New(apierror.BadRequest, "hook %s: %v", f.Config.Hook, err)
		}
		return hint.SessionIDOf(token), nil
	}
	header := r.Header.Get(hint.Header)
	if header == "" {
		return hint.DefaultSession, nil
	}
	if f.VerifyKey == "" {
		return "", apierror.New(apierror.BadHint, "function %s has no hint key: deploy it with one to use sessions", f.Name)
	}
	return f.verify.Resolve(f.Name, header)
}

// SessionInfo is a session namespace as GET .../sessions shows it.
type SessionInfo struct {
	ID          string          `json:"id"`
	Status      string          `json:"status"` // active, checkpointed
	Primary     *ContainerInfo  `json:"primary,omitempty"`
	Secondaries []ContainerInfo `json:"secondaries"`
	Workers     int             `json:"workers"`
	InFlight    int             `json:"in_flight"`
	StateBytes  int64           `json:"state_bytes"`
	StateKeys   int64           `json:"state_keys"`
	LastActive  time.Time       `json:"last_active"`
}

// ContainerInfo is one container of a session.
type ContainerInfo struct {
	Container string `json:"container"`
	Node      string `json:"node"`
	Addr      string `json:"addr"`
	Workers   int    `json:"workers"`
	InFlight  int    `json:"in_flight"`
	Error     string `json:"error,omitempty"` // status could not be read
}

func (s *Server) listSessions(w http.ResponseWriter, r *http.Request) {
	f, err := s.lookup(r.PathValue("name"))
	if err != nil {
		writeError(w, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	list := s.sched.Sessions(ctx, f.Name)
	stored, err := s.ckpts.sessions(ctx, f.Name)
	if err != nil {
		writeError(w, apierror.New(apierror.Unavailable, "list checkpointed sessions: %v", err))
		return
	}
	active := make(map[string]bool, len(list))
	for _, si := range list {
		active[si.ID] = true
	}
	for _, si := range stored {
		if !active[si.ID] {
			list = append(list, si)
		}
	}
	slices.SortFunc(list, func(a, b SessionInfo) int { return strings.Compare(a.ID, b.ID) })
	writeJSON(w, http.StatusOK, list)
}

// evictSession checkpoints a session and releases its containers.
func (s *Server) evictSession(w http.ResponseWriter, r *http.Request) {
	s.sessionCall(w, r, "evicted", s.sched.Evict)
}

// checkpointSession checkpoints a session that stays active.
func (s *Server) checkpointSession(w http.ResponseWriter, r *http.Request) {
	s.sessionCall(w, r, "checkpointed", s.sched.Checkpoint)
}

// CheckpointReply answers evict and checkpoint.
type CheckpointReply struct {
	Session    string               `json:"session"`
	Action     string               `json:"action"` // evicted, checkpointed
	Checkpoint proxy.CheckpointInfo `json:"checkpoint"`
}

func (s *Server) sessionCall(w http.ResponseWriter, r *http.Request, action string, call func(ctx context.Context, fn, session string) (proxy.CheckpointInfo, error)) {
	f, err := s.lookup(r.PathValue("name"))
	if err != nil {
		writeError(w, err)
		return
	}
	id := r.PathValue("id")
	ctx, cancel := context.WithTimeout(r.Context(), 60*time.Second)
	defer cancel()
	info, err := call(ctx, f.Name, id)
	if errors.Is(err, errNotActive) {
		err = apierror.New(apierror.NotFound, "no active session %q of %s", id, f.Name)
	}
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, CheckpointReply{Session: id, Action: action, Checkpoint: info})
}

// ErrorBody is the JSON of every error response.
type ErrorBody struct {
	Error string `json:"error"`
	Kind  string `json:"kind"`
}

func writeError(w http.ResponseWriter, err error) {
	var ae *apierror.Error
	if !errors.As(err, &ae) {
		ae = &apierror.Error{Kind: apierror.KindOf(err), Message: err.Error()}
	}
	if ae.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(ae.RetryAfter))
	}
	writeJSON(w, ae.Kind.Status(), ErrorBody{Error: ae.Message, Kind: string(ae.Kind)})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
