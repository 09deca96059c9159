// Prints the CID that IPFS's JavaScript UnixFS importer gives each file named on the command
// line, with the options that match `ipfs add --cid-version=1` in Kubo: CIDv1, raw leaves,
// 256 KiB fixed-size chunks, balanced DAG of at most 174 links per node, and a single-chunk
// file reduced to its raw leaf. One line per file: "<cid> <path>".
import { createReadStream } from 'node:fs'
import { MemoryBlockstore } from 'blockstore-core/memory'
import { importer } from 'ipfs-unixfs-importer'
import { kuboAddOptions as options } from './kubo-options.mjs'

for (const path of process.argv.slice(2)) {
  const blockstore = new MemoryBlockstore()
  let root
  for await (const entry of importer([{ content: createReadStream(path) }], blockstore, options)) {
    root = entry.cid
  }
  console.log(`${root.toString()} ${path}`)
}
