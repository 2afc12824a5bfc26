# The xfaas control plane as a Nomad job: `xfaas controlplane` with the
# nomad placement backend and the consul registry, its config rendered by
# a template. It places session containers through the pool job
# (xfaas-pool.nomad.hcl) and one-off jobs of the xfaas driver.
#
#   nomad job run -var xfaas=/usr/local/bin/xfaas jobspecs/xfaas-controlplane.nomad.hcl

variable "xfaas" {
  type        = string
  description = "absolute path of the xfaas binary on the nodes"
}

variable "port" {
  type        = number
  default     = 8080
  description = "the HTTP API's port, on 127.0.0.1"
}

variable "nats" {
  type    = string
  default = "nats://127.0.0.1:4222"
}

variable "nomad_addr" {
  type    = string
  default = "http://127.0.0.1:4646"
}

variable "consul_addr" {
  type    = string
  default = "127.0.0.1:8500"
}

variable "pool_job" {
  type    = string
  default = "xfaas-pool"
}

variable "capacity" {
  type        = number
  default     = 32
  description = "claimed containers per node"
}

variable "datacenters" {
  type    = list(string)
  default = ["*"]
}

variable "log_level" {
  type    = string
  default = "info"
}

job "xfaas-controlplane" {
  datacenters = var.datacenters
  type        = "service"

  group "controlplane" {
    count = 1

    network {
      port "http" {
        static = var.port
      }
    }

    restart {
      attempts = 5
      interval = "1m"
      delay    = "2s"
      mode     = "delay"
    }

    task "controlplane" {
      driver = "raw_exec"

      config {
        command = var.xfaas
        args    = ["controlplane", "--config", "${NOMAD_TASK_DIR}/config.json", "--log-level", var.log_level]
      }

      template {
        destination = "local/config.json"
        data        = <<-EOT
        {
          "listen": "127.0.0.1:${var.port}",
          "data": "{{ env "NOMAD_ALLOC_DIR" }}/data",
          "nats": "${var.nats}",
          "placement": {
            "backend": "nomad",
            "nomad": "${var.nomad_addr}",
            "consul": "${var.consul_addr}",
            "pool_job": "${var.pool_job}",
            "capacity": ${var.capacity}
          },
          "registry": {"backend": "consul", "consul": "${var.consul_addr}"}
        }
        EOT
      }

      resources {
        cpu    = 500
        memory = 512
      }

      service {
        name = "xfaas-controlplane"
        port = "http"

        check {
          type     = "http"
          path     = "/healthz"
          interval = "2s"
          timeout  = "1s"
        }
      }
    }
  }
}
