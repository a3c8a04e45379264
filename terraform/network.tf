# A VPC with one public subnet per availability zone. The brokers get public
# addresses only so they can reach the internet (etcd and Strata downloads,
# S3) through the internet gateway; the security group below admits nothing
# from outside allowed_cidrs / ssh_cidrs.

data "aws_availability_zones" "available" {
  state = "available"

  filter {
    name   = "opt-in-status"
    values = ["opt-in-not-required"]
  }
}

locals {
  azs          = length(var.availability_zones) > 0 ? slice(var.availability_zones, 0, 3) : slice(data.aws_availability_zones.available.names, 0, 3)
  subnet_cidrs = [for i in range(3) : cidrsubnet(var.vpc_cidr, 4, i)]
}

resource "aws_vpc" "this" {
  cidr_block           = var.vpc_cidr
  enable_dns_support   = true
  enable_dns_hostnames = true

  tags = {
    Name = var.name
  }
}

resource "aws_internet_gateway" "this" {
  vpc_id = aws_vpc.this.id

  tags = {
    Name = var.name
  }
}

resource "aws_subnet" "public" {
  count = 3

  vpc_id                  = aws_vpc.this.id
  cidr_block              = local.subnet_cidrs[count.index]
  availability_zone       = local.azs[count.index]
  map_public_ip_on_launch = true

  tags = {
    Name = "${var.name}-public-${local.azs[count.index]}"
  }
}

resource "aws_route_table" "public" {
  vpc_id = aws_vpc.this.id

  route {
    cidr_block = "0.0.0.0/0"
    gateway_id = aws_internet_gateway.this.id
  }

  tags = {
    Name = "${var.name}-public"
  }
}

resource "aws_route_table_association" "public" {
  count = 3

  subnet_id      = aws_subnet.public[count.index].id
  route_table_id = aws_route_table.public.id
}

# --- security group -----------------------------------------------------

resource "aws_security_group" "broker" {
  name_prefix = "${var.name}-broker-"
  description = "Strata brokers: Kafka, metrics, replication and etcd"
  vpc_id      = aws_vpc.this.id

  tags = {
    Name = "${var.name}-broker"
  }
}

# Kafka clients (9092) and Prometheus scrapes (9644) from allowed_cidrs.
resource "aws_vpc_security_group_ingress_rule" "clients" {
  for_each = {
    for pair in setproduct(local.allowed_cidrs, [9092, 9644]) :
    "${pair[1]}-${pair[0]}" => { cidr = pair[0], port = pair[1] }
  }

  security_group_id = aws_security_group.broker.id
  description       = each.value.port == 9092 ? "Kafka clients" : "Strata metrics"
  cidr_ipv4         = each.value.cidr
  ip_protocol       = "tcp"
  from_port         = each.value.port
  to_port           = each.value.port
}

# Between cluster members: replica fetchers (9092) and etcd (client 2379,
# peer 2380). etcd has no TLS here, so it is reachable from the brokers only.
resource "aws_vpc_security_group_ingress_rule" "cluster" {
  for_each = {
    replication = 9092
    etcd_client = 2379
    etcd_peer   = 2380
  }

  security_group_id            = aws_security_group.broker.id
  description                  = "${each.key} between Strata brokers"
  referenced_security_group_id = aws_security_group.broker.id
  ip_protocol                  = "tcp"
  from_port                    = each.value
  to_port                      = each.value
}

resource "aws_vpc_security_group_ingress_rule" "ssh" {
  for_each = toset(var.ssh_cidrs)

  security_group_id = aws_security_group.broker.id
  description       = "SSH"
  cidr_ipv4         = each.value
  ip_protocol       = "tcp"
  from_port         = 22
  to_port           = 22
}

resource "aws_vpc_security_group_egress_rule" "all" {
  security_group_id = aws_security_group.broker.id
  description       = "All outbound (downloads, S3, AWS APIs)"
  cidr_ipv4         = "0.0.0.0/0"
  ip_protocol       = "-1"
}
