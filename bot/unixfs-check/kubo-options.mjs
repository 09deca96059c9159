// The importer options that match `ipfs add --cid-version=1` in Kubo: CIDv1, raw leaves,
// 256 KiB fixed-size chunks, balanced DAG of at most 174 links per node, and a single-chunk
// file reduced to its raw leaf.
import { fixedSize } from 'ipfs-unixfs-importer/chunker'
import { balanced } from 'ipfs-unixfs-importer/layout'

export const kuboAddOptions = {
  cidVersion: 1,
  rawLeaves: true,
  reduceSingleLeafToSelf: true,
  chunker: fixedSize({ chunkSize: 262144 }),
  layout: balanced({ maxChildrenPerNode: 174 })
}
