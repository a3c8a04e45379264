# The brokers: one instance per subnet/zone, each running an etcd member and
# a Strata broker (templates/user_data.sh.tftpl). The private addresses are
# fixed up front (cidrhost(subnet, 10)) so that the etcd cluster and the
# broker list can be written into every instance's user data without a
# dependency cycle between the instances.

data "aws_ami" "al2023" {
  most_recent = true
  owners      = ["amazon"]

  filter {
    name   = "name"
    values = ["al2023-ami-2023.*-x86_64"]
  }

  filter {
    name   = "architecture"
    values = ["x86_64"]
  }

  filter {
    name   = "virtualization-type"
    values = ["hvm"]
  }
}

locals {
  broker_ips = [for i in range(var.broker_count) : cidrhost(local.subnet_cidrs[i], 10)]

  etcd_names           = [for i in range(var.broker_count) : "${var.name}-${i + 1}"]
  etcd_endpoints       = join(",", [for ip in local.broker_ips : "http://${ip}:2379"])
  etcd_initial_cluster = join(",", [for i, ip in local.broker_ips : "${local.etcd_names[i]}=http://${ip}:2380"])

  remote_url = "s3://${aws_s3_bucket.tier.bucket}/${var.bucket_prefix}?region=${var.region}"

  # Three brokers: every partition on all three, acks=all needs two.
  replication_factor  = var.broker_count >= 3 ? 3 : 1
  min_insync_replicas = var.broker_count >= 3 ? 2 : 1

  allowed_cidrs = var.allowed_cidrs == null ? [var.vpc_cidr] : var.allowed_cidrs
}

resource "aws_instance" "broker" {
  count = var.broker_count

  ami                    = data.aws_ami.al2023.id
  instance_type          = var.instance_type
  subnet_id              = aws_subnet.public[count.index].id
  private_ip             = local.broker_ips[count.index]
  vpc_security_group_ids = [aws_security_group.broker.id]
  iam_instance_profile   = aws_iam_instance_profile.broker.name
  key_name               = var.ssh_key_name

  user_data = templatefile("${path.module}/templates/user_data.sh.tftpl", {
    broker_id            = count.index + 1
    private_ip           = local.broker_ips[count.index]
    az                   = local.azs[count.index]
    region               = var.region
    etcd_name            = local.etcd_names[count.index]
    etcd_initial_cluster = local.etcd_initial_cluster
    etcd_cluster_token   = "${var.name}-etcd"
    etcd_endpoints       = local.etcd_endpoints
    etcd_download_url    = var.etcd_download_url
    strata_binary_url    = var.strata_binary_url
    remote_url           = local.remote_url
    replication_factor   = local.replication_factor
    min_insync_replicas  = local.min_insync_replicas
    extra_args           = var.strata_extra_args
  })

  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }

  root_block_device {
    volume_type = "gp3"
    volume_size = 30
    encrypted   = true
  }

  # The data volume: Strata's hot log segments and the etcd member's data,
  # mounted at /var/lib/strata by the user data.
  ebs_block_device {
    device_name           = "/dev/sdf"
    volume_type           = "gp3"
    volume_size           = var.data_volume_gb
    encrypted             = true
    delete_on_termination = true
  }

  tags = {
    Name           = "${var.name}-broker-${count.index + 1}"
    StrataBrokerId = tostring(count.index + 1)
  }

  # Replacing a broker replaces its data volume and its etcd member, which
  # needs the manual steps in README.md. So a newer Amazon Linux AMI, edited
  # user data (e.g. strata_extra_args) or a new volume size do not replace
  # running brokers; see README.md for rolling such changes out.
  lifecycle {
    ignore_changes = [ami, user_data, ebs_block_device]
  }

  # The user data downloads etcd and Strata at first boot and Strata reads
  # the bucket at start: the route out and the role's permissions must
  # exist by then.
  depends_on = [
    aws_route_table_association.public,
    aws_vpc_security_group_egress_rule.all,
    aws_iam_role_policy.tier,
    aws_iam_role_policy.binary,
  ]
}
