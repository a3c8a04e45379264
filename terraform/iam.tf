# The brokers' instance role. Strata's S3 backend uses the AWS SDK's default
# credential chain, which finds this role through the instance metadata
# service, so no access keys are configured anywhere.

data "aws_partition" "current" {}

locals {
  # strata_binary_url may point into another bucket; the brokers then need
  # to read that one object at first boot.
  strata_binary_from_s3 = startswith(var.strata_binary_url, "s3://")
  strata_binary_arn     = "arn:${data.aws_partition.current.partition}:s3:::${trimprefix(var.strata_binary_url, "s3://")}"
}

resource "aws_iam_role" "broker" {
  name_prefix = "${var.name}-broker-"
  description = "Strata brokers (${var.name}): remote tier in S3"

  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = "ec2.amazonaws.com" }
      Action    = "sts:AssumeRole"
    }]
  })
}

resource "aws_iam_role_policy" "tier" {
  name = "strata-remote-tier"
  role = aws_iam_role.broker.id

  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        # HeadBucket at start-up needs s3:ListBucket; so do the listings of
        # remote segments.
        Sid      = "TierBucket"
        Effect   = "Allow"
        Action   = ["s3:ListBucket", "s3:GetBucketLocation"]
        Resource = aws_s3_bucket.tier.arn
      },
      {
        # Uploads (single and multipart; a failed multipart upload is
        # aborted), ranged reads, and deletes by retention.
        Sid      = "TierObjects"
        Effect   = "Allow"
        Action   = ["s3:PutObject", "s3:GetObject", "s3:DeleteObject", "s3:AbortMultipartUpload"]
        Resource = "${aws_s3_bucket.tier.arn}/*"
      },
    ]
  })
}

resource "aws_iam_role_policy" "binary" {
  count = local.strata_binary_from_s3 ? 1 : 0

  name = "strata-binary-download"
  role = aws_iam_role.broker.id

  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Sid      = "StrataBinary"
      Effect   = "Allow"
      Action   = ["s3:GetObject"]
      Resource = local.strata_binary_arn
    }]
  })
}

resource "aws_iam_instance_profile" "broker" {
  name_prefix = "${var.name}-broker-"
  role        = aws_iam_role.broker.name
}
