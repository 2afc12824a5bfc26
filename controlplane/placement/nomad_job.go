package placement

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"time"

	consulapi "github.com/hashicorp/consul/api"
	nomadapi "github.com/hashicorp/nomad/api"
)

// oneOffTask is the task name of one-off jobs, and so the suffix of their
// container ids.
const oneOffTask = "proxy"

// startOneOff registers a one-off job with one container of size pinned to
// node, waits until it serves, and claims it. On failure the job is gone.
func (n *Nomad) startOneOff(ctx context.Context, node string, size Size) (_ *nomadClaim, err error) {
	ctx, cancel := context.WithTimeout(ctx, n.opts.StartTimeout)
	defer cancel()
	cpu, err := n.oneOffCPU(ctx, node, size)
	if err != nil {
		return nil, err
	}
	job := n.oneOffJob(n.opts.JobPrefix+randomSuffix(), node, size, cpu)
	if _, _, err := n.opts.Nomad.Jobs().Register(job, (&nomadapi.WriteOptions{}).WithContext(ctx)); err != nil {
		return nil, fmt.Errorf("register job %s: %w", *job.ID, err)
	}
	defer func() {
		if err != nil {
			n.removeJob(context.WithoutCancel(ctx), *job.ID)
		}
	}()
	c, err := n.waitServing(ctx, *job.ID)
	if err != nil {
		return nil, fmt.Errorf("job %s: %w", *job.ID, err)
	}
	c.Job = *job.ID
	won, err := n.claim(ctx, c)
	if err == nil && !won {
		err = fmt.Errorf("container %s of job %s is claimed by someone else", c.Container, *job.ID)
	}
	if err != nil {
		return nil, err
	}
	return c, nil
}

// removeJob deregisters and purges a one-off job that did not start,
// trying again for a while if Nomad does not answer: its blocked
// evaluation goes with it, and Nomad deregisters the service of an
// allocation it stops, so nothing of it is left in Nomad or Consul.
func (n *Nomad) removeJob(ctx context.Context, job string) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for {
		_, _, err := n.opts.Nomad.Jobs().Deregister(job, true, (&nomadapi.WriteOptions{}).WithContext(ctx))
		if err == nil {
			return
		}
		if !sleepCtx(ctx, 250*time.Millisecond) {
			n.log.Error("failed to remove a one-off job that did not start; remove it with nomad job stop -purge", "job", job, "error", err)
			return
		}
	}
}

// oneOffJob is a service job of one xfaas container of size on node, which
// never restarts nor moves: a container that ends is lost, and its claim
// with it. Nomad reserves the memory the container's cgroup lets it use
// (its Limits), so that it never places more than a node holds, and cpu
// MHz (oneOffCPU). Its service is the pool job's, with meta job naming this
// job, so no replica takes it for a pool container.
func (n *Nomad) oneOffJob(id, node string, size Size, cpu int) *nomadapi.Job {
	size = size.filled()
	_, memoryMB := size.Limits()
	mem := int(memoryMB)
	job := nomadapi.NewServiceJob(id, id, "global", 50)
	job.Datacenters = n.opts.Datacenters
	job.Meta = map[string]string{"xfaas": "one-off"}
	job.Constrain(nomadapi.NewConstraint("${node.unique.name}", "=", node))
	task := nomadapi.NewTask(oneOffTask, DriverName)
	task.Config = map[string]any{"role": "pool", "extra_args": []string{"--listen", "tcp://${NOMAD_ADDR_" + DriverName + "}"}}
	for i, v := range size.values() {
		task.Config[sizeKeys[i]] = v
	}
	task.Require(&nomadapi.Resources{CPU: &cpu, MemoryMB: &mem})
	task.KillTimeout = ptr(15 * time.Second)
	meta := size.meta()
	maps.Copy(meta, map[string]string{"role": "pool", "job": id, "node": "${node.unique.name}",
		"alloc": "${NOMAD_ALLOC_ID}", "task": "${NOMAD_TASK_NAME}"})
	task.Services = []*nomadapi.Service{{
		Name: n.opts.Service, PortLabel: DriverName, AddressMode: "driver",
		Tags: []string{"one-off"}, Meta: meta,
		Checks: []nomadapi.ServiceCheck{{Type: "http", Path: "/healthz", AddressMode: "driver", PortLabel: DriverName,
			Interval: time.Second, Timeout: time.Second}},
	}}
	group := nomadapi.NewTaskGroup("session", 1).AddTask(task)
	group.RestartPolicy = &nomadapi.RestartPolicy{Attempts: ptr(0), Mode: ptr("fail")}
	group.ReschedulePolicy = &nomadapi.ReschedulePolicy{Attempts: ptr(0), Unlimited: ptr(false)}
	// As in the pool job: the proxy listens on a port Nomad reserves.
	group.Networks = []*nomadapi.NetworkResource{{DynamicPorts: []nomadapi.Port{{Label: DriverName, To: -1}}}}
	job.AddTaskGroup(group)
	return job
}

func ptr[T any](v T) *T { return &v }

// oneOffCPU is the CPU, in MHz, Nomad reserves for a one-off container of
// size on node, at the rate cpuRate says.
func (n *Nomad) oneOffCPU(ctx context.Context, node string, size Size) (int, error) {
	rate, ok := n.poolRate(ctx)
	if !ok {
		var err error
		if rate, err = n.nodeRate(ctx, node); err != nil {
			return 0, err
		}
	}
	millicores, _ := size.Limits()
	return int(rate.reserve(millicores)), nil
}

// cpuRate is how many MHz Nomad reserves for how many millicores of a
// container's cgroup quota. A one-off reserves as much for each millicore
// of its quota as the pool job reserves for its containers' (cpu_mhz in
// jobspecs/xfaas-pool.nomad.hcl, the operator's choice of how much of a
// quota, a ceiling, to reserve), so that a one-off and a pool container of
// one size count alike (poolRate). Without a pool job to go by, it reserves
// the whole quota, at the MHz of one of its node's cores (coreRate).
type cpuRate struct{ mhz, millicores int64 }

// reserve is the MHz a quota of millicores reserves, rounded up.
func (r cpuRate) reserve(millicores int64) int64 {
	return (millicores*r.mhz + r.millicores - 1) / r.millicores
}

// quota is the largest quota, in millicores, whose reservation fits in mhz.
func (r cpuRate) quota(mhz int64) int64 { return max(mhz, 0) * r.millicores / r.mhz }

// poolRate returns the rate of the pool job's task: the CPU it reserves
// for its containers' cgroup quota; false without a pool job that says.
func (n *Nomad) poolRate(ctx context.Context) (cpuRate, bool) {
	job, _, err := n.opts.Nomad.Jobs().Info(n.opts.PoolJob, (&nomadapi.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return cpuRate{}, false
	}
	for _, g := range job.TaskGroups {
		for _, t := range g.Tasks {
			if t.Driver != DriverName || t.Resources == nil || t.Resources.CPU == nil || *t.Resources.CPU <= 0 {
				continue
			}
			millicores, _ := taskSize(t.Config).Limits()
			return cpuRate{mhz: int64(*t.Resources.CPU), millicores: millicores}, true
		}
	}
	return cpuRate{}, false
}

// taskSize is the size an xfaas task config asks for; what it leaves out
// takes the driver's defaults, which are the function config's.
func taskSize(config map[string]any) Size {
	var v [3]int
	for i, k := range sizeKeys {
		n, _ := config[k].(float64) // JSON numbers
		v[i] = int(n)
	}
	return sizeOfValues(v)
}

// nodeRate is coreRate of the node named node.
func (n *Nomad) nodeRate(ctx context.Context, node string) (cpuRate, error) {
	stubs, _, err := n.opts.Nomad.Nodes().List((&nomadapi.QueryOptions{
		Filter: fmt.Sprintf("Name == %q", node), Params: map[string]string{"resources": "true"}}).WithContext(ctx))
	if err != nil {
		return cpuRate{}, fmt.Errorf("read node %s: %w", node, err)
	}
	for _, s := range stubs {
		if r, ok := coreRate(s); ok {
			return r, nil
		}
	}
	return cpuRate{}, fmt.Errorf("node %s does not report its CPU", node)
}

// coreRate reserves a whole quota at what Nomad counts one of node s's
// cores as: its usable compute over its cores, as Nomad itself converts MHz
// to a share of the CPUs. False for a node that does not report its CPU.
func coreRate(s *nomadapi.NodeListStub) (cpuRate, bool) {
	if r := s.NodeResources; r != nil && r.Cpu.TotalCpuCores > 0 {
		if core := r.Cpu.CpuShares / int64(r.Cpu.TotalCpuCores); core > 0 {
			return cpuRate{mhz: core, millicores: 1000}, true
		}
	}
	return cpuRate{}, false
}

// waitServing waits until the job's container is registered in Consul,
// which Nomad does once the driver has reported the proxy ready: sooner
// than the allocation's status reaches the servers. Between blocking
// queries it checks that the allocation has not failed.
func (n *Nomad) waitServing(ctx context.Context, job string) (*nomadClaim, error) {
	var index uint64
	filter := fmt.Sprintf(`ServiceMeta.job == %q`, job)
	for {
		svcs, meta, err := n.opts.Consul.Catalog().Service(n.opts.Service, "",
			(&consulapi.QueryOptions{Filter: filter, WaitIndex: index, WaitTime: time.Second}).WithContext(ctx))
		if err != nil {
			return nil, fmt.Errorf("wait for the container's service: %w", err)
		}
		for _, s := range svcs {
			if c := claimOf(&consulapi.AgentService{Address: s.ServiceAddress, Port: s.ServicePort, Meta: s.ServiceMeta}); c != nil {
				return c, nil
			}
		}
		index = meta.LastIndex
		if err := n.checkStarting(ctx, job); err != nil {
			return nil, err
		}
	}
}

// checkStarting fails if the job's allocation failed, if Nomad could not
// place it (the node has no room for its resources), or if ctx ended.
func (n *Nomad) checkStarting(ctx context.Context, job string) error {
	if err := ctx.Err(); err != nil {
		return errors.New("the container did not start in time")
	}
	q := (&nomadapi.QueryOptions{}).WithContext(ctx)
	allocs, _, err := n.opts.Nomad.Jobs().Allocations(job, false, q)
	if err != nil {
		return nil // asked again after the next wait
	}
	for _, a := range allocs {
		if a.ClientStatus == "failed" || a.ClientStatus == "lost" {
			return fmt.Errorf("allocation %s %s: %s", a.ID, a.ClientStatus, lastEvent(a.TaskStates[oneOffTask]))
		}
	}
	if len(allocs) > 0 {
		return nil
	}
	evals, _, err := n.opts.Nomad.Jobs().Evaluations(job, q)
	if err != nil {
		return nil
	}
	for _, e := range evals {
		for _, m := range e.FailedTGAllocs {
			return fmt.Errorf("%w: nomad cannot place job %s (exhausted: %v, filtered: %v)", ErrNodeFull, job, m.DimensionExhausted, m.ConstraintFiltered)
		}
	}
	return nil
}

func lastEvent(ts *nomadapi.TaskState) string {
	if ts == nil || len(ts.Events) == 0 {
		return "no task events"
	}
	e := ts.Events[len(ts.Events)-1]
	return e.Type + ": " + e.DisplayMessage
}
