import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import type { S3Client } from '@aws-sdk/client-s3';

/** Where closed gateway files go when their target names a bucket (docs/message-gateway.md). */
export interface FileUploader {
  /** Puts the file at `path` as `key` in `bucket`; resolves when the store has it. */
  upload(bucket: string, key: string, path: string): Promise<void>;
  close(): void;
}

/**
 * Uploads to S3 or an S3-compatible store (MinIO, Ceph, R2…) with the AWS SDK v3, loaded at the
 * first upload. `endpoint` (HEARTH_GATEWAY_S3_ENDPOINT) picks a store other than AWS, addressed by
 * path (`endpoint/bucket/key`); credentials come from the SDK's usual chain (AWS_ACCESS_KEY_ID and
 * AWS_SECRET_ACCESS_KEY, a profile, or the pod's role), never from the route.
 */
export class S3Uploader implements FileUploader {
  private client: Promise<S3Client> | undefined;

  constructor(private readonly opts: { endpoint?: string; region: string }) {}

  private s3(): Promise<S3Client> {
    this.client ??= import('@aws-sdk/client-s3').then(
      ({ S3Client }) =>
        new S3Client({
          region: this.opts.region,
          // S3-compatible stores: path-style addresses, and checksums only where S3 requires them (many
          // do not take the streamed, trailing checksums the SDK would otherwise send with a file body).
          ...(this.opts.endpoint ? { endpoint: this.opts.endpoint, forcePathStyle: true, requestChecksumCalculation: 'WHEN_REQUIRED' as const } : {}),
          maxAttempts: 3,
        }),
    );
    return this.client;
  }

  async upload(bucket: string, key: string, path: string): Promise<void> {
    const [client, { PutObjectCommand }, { size }] = await Promise.all([this.s3(), import('@aws-sdk/client-s3'), stat(path)]);
    const gzip = path.endsWith('.gz');
    await client.send(
      new PutObjectCommand({
        Bucket: bucket,
        Key: key,
        // Streamed from the file, with its length: a 64 MiB file is never held in memory.
        Body: createReadStream(path),
        ContentLength: size,
        ContentType: gzip ? 'application/gzip' : 'application/x-ndjson',
      }),
    );
  }

  close(): void {
    void this.client?.then((c) => c.destroy());
  }
}
