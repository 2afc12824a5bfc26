# The Nomad agent of a single-node xfaas cluster: server and client in one
# process, with its state on disk, so that an agent that restarts on the same
# data_dir finds its jobs again and the xfaas driver reattaches to its
# containers (`nomad agent -dev` keeps no state and kills every task when it
# stops).
#
# Machine-specific settings come from a second config file given after this
# one (`nomad agent -config jobspecs/agent.hcl -config local.hcl`), which
# scripts/cluster-up.sh and the e2e tests write:
#
#   data_dir   = "/path/to/state"
#   plugin_dir = "/path/with/the/driver/named/xfaas"
#   plugin "xfaas" {
#     config {
#       proxy_path = "/path/to/xfaas"
#       nats       = "nats://127.0.0.1:4222"
#     }
#   }
#
# and, for other ports than 4646-4648 and Consul on 127.0.0.1:8500, a ports
# and a consul block.

bind_addr            = "127.0.0.1"
disable_update_check = true
log_level            = "INFO"

# Bound to 127.0.0.1, the agent must say so: it would otherwise advertise
# an address of another interface.
advertise {
  http = "127.0.0.1"
  rpc  = "127.0.0.1"
  serf = "127.0.0.1"
}

server {
  enabled          = true
  bootstrap_expect = 1
}

client {
  enabled           = true
  network_interface = "lo"

  options {
    # An AWS_CA_BUNDLE in the environment breaks the cloud fingerprinters.
    "fingerprint.denylist" = "env_aws,env_gce,env_azure,env_digitalocean"
  }
}

# The control plane and NATS run as raw_exec jobs.
plugin "raw_exec" {
  config {
    enabled = true
  }
}

# Allocation stats (`nomad alloc status -stats`, the API's alloc stats) are
# collected only when they are published.
telemetry {
  publish_allocation_metrics = true
  collection_interval        = "1s"
}

consul {
  address = "127.0.0.1:8500"
}
