variable "name" {
  description = "Name prefix of every resource (VPC, security group, IAM role, bucket, instances) and of the etcd members."
  type        = string
  default     = "strata"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,19}$", var.name))
    error_message = "name must be 1-20 characters of lower-case letters, digits and '-', starting with a letter (it is part of the bucket name)."
  }
}

variable "region" {
  description = "AWS region to deploy into; also the region of the remote-tier bucket."
  type        = string
  default     = "us-east-1"

  validation {
    condition     = can(regex("^[a-z]{2}(-[a-z]+)+-[0-9]+$", var.region))
    error_message = "region must be an AWS region name such as us-east-1."
  }
}

variable "vpc_cidr" {
  description = "IPv4 CIDR of the new VPC (a /16 to /24). It is split into three public subnets; broker i gets the fixed address cidrhost(subnet_i, 10)."
  type        = string
  default     = "10.42.0.0/16"

  validation {
    condition = can(cidrnetmask(var.vpc_cidr)) && try(
      tonumber(split("/", var.vpc_cidr)[1]) >= 16 && tonumber(split("/", var.vpc_cidr)[1]) <= 24,
      false,
    )
    error_message = "vpc_cidr must be an IPv4 CIDR with a prefix length from /16 to /24."
  }
}

variable "availability_zones" {
  description = "Three availability zones for the subnets (broker i goes to zone i). Empty: the first three zones of the region that need no opt-in."
  type        = list(string)
  default     = []

  validation {
    condition     = length(var.availability_zones) == 0 || length(var.availability_zones) >= 3
    error_message = "availability_zones must be empty or name at least three zones."
  }
}

variable "broker_count" {
  description = "Number of brokers, each also an etcd member: 3 (replication factor 3, min.insync.replicas 2, etcd quorum 2) or 1 (a single-machine trial without redundancy)."
  type        = number
  default     = 3

  validation {
    condition     = contains([1, 3], var.broker_count)
    error_message = "broker_count must be 3 (or 1 for a trial without redundancy)."
  }
}

variable "instance_type" {
  description = "EC2 instance type of the brokers. It must be x86_64: the configuration installs linux-amd64 binaries of etcd and Strata."
  type        = string
  default     = "m6i.large"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]*\\.[a-z0-9]+$", var.instance_type)) && !can(regex("^[a-z]+[0-9]+[a-z]*g", var.instance_type))
    error_message = "instance_type must be an x86_64 instance type such as m6i.large; Graviton (arm64) types are not supported by this configuration."
  }
}

variable "data_volume_gb" {
  description = "Size in GiB of each broker's gp3 data volume, mounted at /var/lib/strata (Strata's hot log segments and the etcd data)."
  type        = number
  default     = 500

  validation {
    condition     = var.data_volume_gb >= 10 && var.data_volume_gb <= 16384 && floor(var.data_volume_gb) == var.data_volume_gb
    error_message = "data_volume_gb must be a whole number from 10 to 16384."
  }
}

variable "ssh_key_name" {
  description = "Name of an existing EC2 key pair to install on the brokers; null installs none."
  type        = string
  default     = null
}

variable "ssh_cidrs" {
  description = "IPv4 CIDRs allowed to reach SSH (port 22). Empty (the default) opens no SSH port."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for c in var.ssh_cidrs : can(cidrnetmask(c))])
    error_message = "ssh_cidrs must hold IPv4 CIDRs such as 203.0.113.0/24."
  }
}

variable "allowed_cidrs" {
  description = "IPv4 CIDRs allowed to reach the Kafka port (9092) and the metrics port (9644). null (the default) means the VPC CIDR only; [] means the brokers only."
  type        = list(string)
  default     = null

  validation {
    condition     = alltrue([for c in (var.allowed_cidrs == null ? [] : var.allowed_cidrs) : can(cidrnetmask(c))])
    error_message = "allowed_cidrs must hold IPv4 CIDRs such as 10.0.0.0/8."
  }
}

variable "strata_binary_url" {
  description = "Where each broker downloads a linux-amd64 `strata` binary at first boot: an https:// URL (fetched with curl) or an s3://bucket/key URL (fetched with `aws s3 cp`; the brokers' role is granted s3:GetObject on that object)."
  type        = string

  validation {
    condition     = can(regex("^(https://|s3://)[^\\s'\"]+$", var.strata_binary_url))
    error_message = "strata_binary_url is required and must start with https:// or s3:// (and hold no whitespace or quotes)."
  }
}

variable "etcd_download_url" {
  description = "URL of the etcd release tarball (linux-amd64) installed on every broker."
  type        = string
  default     = "https://github.com/etcd-io/etcd/releases/download/v3.5.17/etcd-v3.5.17-linux-amd64.tar.gz"

  validation {
    condition     = can(regex("^https://[^\\s'\"]+\\.tar\\.gz$", var.etcd_download_url))
    error_message = "etcd_download_url must be an https:// URL of a .tar.gz release archive (and hold no whitespace or quotes)."
  }
}

variable "strata_extra_args" {
  description = "Extra flags appended to `strata serve`, one flag per element, e.g. [\"--num.partitions=6\", \"--log.retention.hours=72\"]. They come last, so they override the flags this configuration sets."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for a in var.strata_extra_args : can(regex("^--?[a-z][-a-z0-9._]*(=[-A-Za-z0-9._:,/+@=]*)?$", a))])
    error_message = "Each strata_extra_args element must be a single flag such as --num.partitions=6 (letters, digits and . _ - : , / + @ = only; no spaces, quotes, '$' or '%')."
  }
}

variable "bucket_name" {
  description = "Name of the S3 bucket created for the remote tier. null: \"<name>-tier-<account id>-<region>\"."
  type        = string
  default     = null

  validation {
    condition     = var.bucket_name == null || can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.bucket_name))
    error_message = "bucket_name must be a valid S3 bucket name (3-63 characters of lower-case letters, digits, '.' and '-')."
  }
}

variable "bucket_prefix" {
  description = "Key prefix under which the brokers keep the remote tier in the bucket."
  type        = string
  default     = "cluster"

  validation {
    condition     = can(regex("^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$", var.bucket_prefix))
    error_message = "bucket_prefix must be one or more '/'-separated segments of letters, digits, '.', '_' and '-', without leading or trailing '/'."
  }
}

variable "force_destroy" {
  description = "Let `terraform destroy` delete the remote-tier bucket even when it still holds objects (all tiered data is lost)."
  type        = bool
  default     = false
}

variable "tags" {
  description = "Tags added to every resource that supports them (through the provider's default_tags)."
  type        = map(string)
  default     = {}
}
