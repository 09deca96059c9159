// js-ipfs 0.66.1 calls Promise.withResolvers, which Node.js 20 lacks: preloaded with --require.
if (!Promise.withResolvers) {
  Promise.withResolvers = function () {
    let resolve, reject
    const promise = new this((a, b) => { resolve = a; reject = b })
    return { promise, resolve, reject }
  }
}
