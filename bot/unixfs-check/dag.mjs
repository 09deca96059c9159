// Checks a snapshot's DAG in an embedded store with IPFS's JavaScript implementations,
// independently of the bot's code:
// - the store's packs (`STORE/packs/*.pack`) are read from the format the README describes:
//   the magic `bbpack1\n`, records, then the index (per block: its CID's 36 bytes, offset and
//   length as u32 little-endian), the index's sha2-256, its entry count and `bbindex1`;
// - every block's CID is recomputed with `multiformats` (sha2-256, CIDv1, raw or dag-pb);
// - every dag-pb block decodes with `@ipld/dag-pb` and encodes back to the same bytes (so it
//   is canonical dag-pb: fields in order, links sorted by name);
// - the root is a UnixFS directory (`ipfs-unixfs`) holding exactly `chunks` and `manifest.age`;
// - every other dag-pb node is a UnixFS file whose `blockSizes` are its children's sizes;
// - the bytes of `manifest.age`, reassembled from its leaves, give the same root CID under
//   `ipfs-unixfs-importer` with `ipfs add --cid-version=1`'s options.
// Usage: node dag.mjs STORE ROOT; prints one summary line, exits non-zero on any mismatch.
import { createHash } from 'node:crypto'
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import * as dagPb from '@ipld/dag-pb'
import { UnixFS } from 'ipfs-unixfs'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { sha256 } from 'multiformats/hashes/sha2'
import { MemoryBlockstore } from 'blockstore-core/memory'
import { importer } from 'ipfs-unixfs-importer'
import { kuboAddOptions as options } from './kubo-options.mjs'

const [store, rootText] = process.argv.slice(2)
const fail = (message) => { console.error(`dag check: ${message}`); process.exit(1) }

// Every block of every finished pack, by CID.
const blocks = new Map()
for (const name of readdirSync(join(store, 'packs')).filter((name) => name.endsWith('.pack'))) {
  const pack = readFileSync(join(store, 'packs', name))
  if (pack.subarray(0, 8).toString('latin1') !== 'bbpack1\n') fail(`${name} has no pack magic`)
  if (pack.subarray(pack.length - 8).toString('latin1') !== 'bbindex1') fail(`${name} has no index`)
  const count = pack.readUInt32LE(pack.length - 12)
  const checksum = pack.subarray(pack.length - 44, pack.length - 12)
  const entries = pack.subarray(pack.length - 44 - count * 44, pack.length - 44)
  if (!createHash('sha256').update(entries).digest().equals(checksum)) {
    fail(`${name}: the index does not match its checksum`)
  }
  for (let at = 0; at < entries.length; at += 44) {
    const cid = CID.decode(entries.subarray(at, at + 36))
    const offset = entries.readUInt32LE(at + 36)
    const length = entries.readUInt32LE(at + 40)
    if (!pack.subarray(offset - 40, offset - 4).equals(entries.subarray(at, at + 36))) {
      fail(`${name}: the record of ${cid} does not start with its CID`)
    }
    if (pack.readUInt32LE(offset - 4) !== length) fail(`${name}: ${cid}'s record has another length`)
    blocks.set(cid.toString(), pack.subarray(offset, offset + length))
  }
}

async function block (cid) {
  const bytes = blocks.get(cid.toString())
  if (bytes === undefined) fail(`${cid} is in no pack`)
  const expected = CID.create(1, cid.code, await sha256.digest(bytes))
  if (!expected.equals(cid)) fail(`${cid} holds bytes whose CID is ${expected}`)
  return bytes
}

const counts = { raw: 0, nodes: 0 }

// Walks the UnixFS file under `cid`; returns its size and, when `collect` is given, pushes
// its leaves' bytes there in order.
async function walkFile (cid, collect) {
  const bytes = await block(cid)
  if (cid.code === raw.code) {
    counts.raw++
    if (collect) collect.push(bytes)
    return bytes.length
  }
  if (cid.code !== dagPb.code) fail(`${cid} is neither raw nor dag-pb`)
  counts.nodes++
  const node = dagPb.decode(bytes)
  if (Buffer.compare(Buffer.from(dagPb.encode(dagPb.prepare(node))), bytes) !== 0) {
    fail(`${cid} is not canonical dag-pb`)
  }
  const unixfs = UnixFS.unmarshal(node.Data)
  if (unixfs.type !== 'file') fail(`${cid} is a UnixFS ${unixfs.type}, not a file`)
  let total = 0n
  for (const [index, link] of node.Links.entries()) {
    const size = BigInt(await walkFile(link.Hash, collect))
    if (unixfs.blockSizes[index] !== size) fail(`${cid}: blockSizes[${index}] is not ${size}`)
    total += size
  }
  if (unixfs.fileSize() !== total) fail(`${cid}: file size ${unixfs.fileSize()} is not ${total}`)
  return Number(total)
}

const root = CID.parse(rootText)
if (root.code !== dagPb.code) fail('the root is not dag-pb')
const rootBytes = await block(root)
const rootNode = dagPb.decode(rootBytes)
if (Buffer.compare(Buffer.from(dagPb.encode(dagPb.prepare(rootNode))), rootBytes) !== 0) {
  fail('the root is not canonical dag-pb')
}
if (UnixFS.unmarshal(rootNode.Data).type !== 'directory') fail('the root is not a UnixFS directory')
const names = rootNode.Links.map((link) => link.Name)
if (names.join(',') !== 'chunks,manifest.age') fail(`the root links ${names}`)

await walkFile(rootNode.Links[0].Hash)
const pieces = []
await walkFile(rootNode.Links[1].Hash, pieces)
const blockstore = new MemoryBlockstore()
let imported
for await (const entry of importer([{ content: Buffer.concat(pieces) }], blockstore, options)) {
  imported = entry.cid
}
if (!imported.equals(rootNode.Links[1].Hash)) {
  fail(`manifest.age is ${rootNode.Links[1].Hash}, the importer makes ${imported}`)
}
console.log(`ok ${root} raw=${counts.raw} dag-pb=${counts.nodes + 1}`)
