# The session pool: warm, unbound xfaas containers that the control plane
# claims for new session namespaces and secondaries (DESIGN.md, "Lifecycle").
# Each container registers service xfaas-session in Consul with meta
# role=pool; a claim is a Consul KV key xfaas/claims/<container>. When the
# control plane releases a claimed container it stops its allocation, and
# Nomad, keeping the count, starts a fresh one.
#
#   nomad job run jobspecs/xfaas-pool.nomad.hcl
#   nomad job run -var count=8 jobspecs/xfaas-pool.nomad.hcl

variable "count" {
  type        = number
  default     = 3
  description = "pool containers in the cluster, spread over the nodes"
}

variable "datacenters" {
  type    = list(string)
  default = ["*"]
}

variable "max_workers" {
  type    = number
  default = 10
}

variable "worker_cpu_millicores" {
  type    = number
  default = 100
}

variable "worker_memory_mb" {
  type    = number
  default = 128
}

variable "cpu_mhz" {
  type        = number
  default     = 500
  description = "CPU Nomad reserves for a container, in MHz; its cgroup quota is max_workers x worker_cpu_millicores + 1000 millicores (see below)"
}

# What the driver gives a container (driver/README.md, cgroup.Container):
# the workers' sum plus the proxy's own share. With the defaults:
#   memory: 10 x 128 MiB + 96 MiB = 1376 MiB
#   CPU:    10 x 100 mc + 1000 mc = 2000 millicores (2 cores)
# Nomad reserves the memory in full, so that it never places more
# containers on a node than the node's memory holds. The CPU quota is a
# ceiling the container reaches only under load, and a busy node's CPU is
# divided among containers by their cgroup shares (1024 per 1000
# millicores) anyway; so cpu_mhz reserves less. To reserve the whole
# quota, set cpu_mhz to 2000 x (the node's MHz per core) / 1000, which is
# all of a 2-core node.
locals {
  memory_mb = var.max_workers * var.worker_memory_mb + 96
}

job "xfaas-pool" {
  datacenters = var.datacenters
  type        = "service"

  group "pool" {
    count = var.count

    spread {
      attribute = "${node.unique.id}"
    }

    # A container never restarts in place: a restarted process would keep
    # its container id while having lost its session. A container that ends
    # fails its allocation, which Nomad replaces at once.
    restart {
      attempts = 0
      mode     = "fail"
    }

    # A deployment is healthy once the containers' checks pass; a job update
    # replaces claimed containers too, ending their sessions (checkpointed
    # ones restore elsewhere), so update the pool when it is quiet.
    update {
      health_check      = "checks"
      min_healthy_time  = "1s"
      healthy_deadline  = "1m"
      progress_deadline = "2m"
    }

    reschedule {
      delay          = "5s"
      delay_function = "constant"
      unlimited      = true
    }

    # The proxy listens on this port (extra_args below): Nomad reserves it,
    # and a service's port label must name a port of the group. to = -1
    # maps it to itself, so address_mode "driver" registers the same port.
    network {
      port "xfaas" {
        to = -1
      }
    }

    task "proxy" {
      driver       = "xfaas"
      kill_timeout = "15s"

      config {
        role                  = "pool"
        max_workers           = var.max_workers
        worker_cpu_millicores = var.worker_cpu_millicores
        worker_memory_mb      = var.worker_memory_mb
        extra_args            = ["--listen", "tcp://${NOMAD_ADDR_xfaas}"]
      }

      resources {
        cpu    = var.cpu_mhz
        memory = local.memory_mb
      }

      service {
        name         = "xfaas-session"
        port         = "xfaas"
        address_mode = "driver"
        tags         = ["pool"]

        # The size meta say what functions the container can hold: the
        # control plane claims it only for a function that fits its cgroup.
        meta {
          role                  = "pool"
          job                   = "${NOMAD_JOB_NAME}"
          node                  = "${node.unique.name}"
          alloc                 = "${NOMAD_ALLOC_ID}"
          task                  = "${NOMAD_TASK_NAME}"
          max_workers           = var.max_workers
          worker_cpu_millicores = var.worker_cpu_millicores
          worker_memory_mb      = var.worker_memory_mb
        }

        check {
          type         = "http"
          path         = "/healthz"
          port         = "xfaas"
          address_mode = "driver"
          interval     = "1s"
          timeout      = "1s"
        }
      }
    }
  }
}
