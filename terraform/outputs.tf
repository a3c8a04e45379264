output "bootstrap_servers" {
  description = "Kafka bootstrap servers (private addresses; reachable from inside the VPC, from allowed_cidrs)."
  value       = join(",", [for b in aws_instance.broker : "${b.private_ip}:9092"])
}

output "broker_private_ips" {
  description = "Private IPv4 address of each broker, in broker-id order (broker i+1 at index i)."
  value       = aws_instance.broker[*].private_ip
}

output "broker_instance_ids" {
  description = "EC2 instance id of each broker, in broker-id order."
  value       = aws_instance.broker[*].id
}

output "bucket" {
  description = "Name of the S3 bucket holding the remote tier."
  value       = aws_s3_bucket.tier.bucket
}

output "remote_url" {
  description = "The --remote URL every broker runs with."
  value       = local.remote_url
}

output "etcd_endpoints" {
  description = "etcd client URLs of the cluster's metadata store (reachable from the brokers only)."
  value       = local.etcd_endpoints
}

output "security_group_id" {
  description = "Security group of the brokers; add rules to it to admit more clients."
  value       = aws_security_group.broker.id
}
