# NATS with JetStream for xfaas (address updates, function modules,
# checkpoints and durability logs), as a raw_exec job running Debian's
# nats-server. Its store must outlive the allocation: give it a directory.
#
#   nomad job run -var store_dir=/var/lib/xfaas/nats jobspecs/nats.nomad.hcl

variable "nats_server" {
  type    = string
  default = "/usr/sbin/nats-server"
}

variable "port" {
  type    = number
  default = 4222
}

variable "store_dir" {
  type        = string
  description = "JetStream's store directory"
}

variable "datacenters" {
  type    = list(string)
  default = ["*"]
}

job "xfaas-nats" {
  datacenters = var.datacenters
  type        = "service"

  group "nats" {
    network {
      port "client" {
        static = var.port
      }
    }

    task "nats" {
      driver = "raw_exec"

      config {
        command = var.nats_server
        args    = ["--config", "${NOMAD_TASK_DIR}/nats.conf"]
      }

      # max_payload: a logged write of durability "log" carries its value,
      # up to 4 MiB, and NATS's default is 1 MiB.
      template {
        destination = "local/nats.conf"
        data        = <<-EOT
        server_name: xfaas
        listen: 127.0.0.1:${var.port}
        max_payload: 8MB
        jetstream {
          store_dir: "${var.store_dir}"
        }
        EOT
      }

      resources {
        cpu    = 200
        memory = 256
      }

      service {
        name = "xfaas-nats"
        port = "client"

        check {
          type     = "tcp"
          interval = "2s"
          timeout  = "1s"
        }
      }
    }
  }
}
