import { zstdVersions } from '../stream/zstd.js';
import { BUNDLE_FORMAT_VERSION } from '../transports/bundle/metadata.js';
import { TOOL_VERSION } from '../version.js';

/** What `ferry version` reports: enough to say which ferry read or wrote a bundle, and on what. */
export interface VersionReport {
  ferry: string;
  node: string;
  /** The newest bundle format (ferry.json formatVersion) this ferry writes and reads. */
  bundleFormat: number;
  zstd: { binding: string; library: string };
  platform: string;
  arch: string;
}

export function versionReport(): VersionReport {
  return {
    ferry: TOOL_VERSION, node: process.versions.node, bundleFormat: BUNDLE_FORMAT_VERSION,
    zstd: zstdVersions(), platform: process.platform, arch: process.arch,
  };
}

export function renderVersion(r: VersionReport): string {
  return [
    `ferry ${r.ferry}`,
    `node ${r.node}`,
    `bundle format ${r.bundleFormat}`,
    `zstd ${r.zstd.library} (zstd-napi ${r.zstd.binding})`,
    `platform ${r.platform}/${r.arch}`,
  ].join('\n');
}
