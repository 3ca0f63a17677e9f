/** Where `ferry import --to KIND` can write; its own module so the CLI can list them without loading every transport. */
export const IMPORT_TARGET_KINDS = ['registry-layout', 'skopeo-dir', 'oci', 'docker-archive', 'registry'] as const;
export type ImportTargetKind = (typeof IMPORT_TARGET_KINDS)[number];
