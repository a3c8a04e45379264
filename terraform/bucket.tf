# The remote tier: sealed segments, their indexes and manifests
# (s3://<bucket>/<bucket_prefix>/...). Terraform creates the bucket, so the
# brokers' --remote URL does not ask for create_bucket.

data "aws_caller_identity" "current" {}

locals {
  bucket_name = coalesce(var.bucket_name, "${var.name}-tier-${data.aws_caller_identity.current.account_id}-${var.region}")
}

resource "aws_s3_bucket" "tier" {
  bucket        = local.bucket_name
  force_destroy = var.force_destroy

  tags = {
    Name = local.bucket_name
  }
}

resource "aws_s3_bucket_public_access_block" "tier" {
  bucket = aws_s3_bucket.tier.id

  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_server_side_encryption_configuration" "tier" {
  bucket = aws_s3_bucket.tier.id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}
