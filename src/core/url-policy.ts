import { lookup as dnsLookup } from 'node:dns';
import { lookup } from 'node:dns/promises';
import type { LookupAddress, LookupOneOptions, LookupAllOptions } from 'node:dns';
import ipaddr from 'ipaddr.js';

const REFUSED = 'which this installation does not call (HEARTH_OUTBOUND_PRIVATE_NETWORKS=deny)';

/** The `lookup` of `net.connect` / `http.request`, in both of the shapes Node calls it. */
export type CheckedLookup = (
  hostname: string,
  options: LookupOneOptions | LookupAllOptions,
  callback: (err: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void,
) => void;

/**
 * Where URLs that people (not the operator) configure may point: automations' webhook actions,
 * homes' notification channels, Web Push endpoints. With `deny` (the default), an address that is
 * not public unicast (loopback, private, link-local such as 169.254.169.254, unique-local,
 * multicast, …) is refused: named literally when the URL is saved, and at connection time for
 * names, whose resolved addresses are checked by the very lookup the connection uses (`lookup`),
 * so a name that resolves to a public address for the check and a private one for the connection
 * (DNS rebinding) is not a way in. Redirects are not followed then. `allow` (a home lab) lets
 * them reach the LAN.
 */
export class UrlPolicy {
  constructor(readonly privateNetworks: 'allow' | 'deny') {}

  /** fetch's redirect mode for these URLs: a redirect could lead anywhere. */
  get redirect(): 'follow' | 'error' | 'manual' {
    return this.privateNetworks === 'deny' ? 'error' : 'follow';
  }

  /** At save time, without DNS: what is wrong with the URL's host, or undefined. */
  problem(url: string): string | undefined {
    if (this.privateNetworks === 'allow') return undefined;
    let host: string;
    try {
      host = hostOf(url);
    } catch {
      return 'is not a URL';
    }
    if (host === 'localhost' || host.endsWith('.localhost')) return `points at ${host}, ${REFUSED}`;
    if (ipaddr.isValid(host) && !isPublic(host)) return `points at ${host}, a non-public address, ${REFUSED}`;
    return undefined;
  }

  /**
   * Before a request: throws when the host is, or resolves to, a non-public address. The message
   * never says which address a name resolved to (that would map the private network for whoever
   * reads the result).
   */
  async check(url: string): Promise<void> {
    if (this.privateNetworks === 'allow') return;
    const saved = this.problem(url);
    if (saved) throw new UrlRefused(saved);
    const host = hostOf(url);
    if (ipaddr.isValid(host)) return;
    const addresses = await lookup(host, { all: true, verbatim: true });
    if (addresses.some((a) => !isPublic(a.address))) throw new UrlRefused(refusedName(host));
  }

  /**
   * With `deny`: a DNS lookup for the connection itself that fails when the name resolves to any
   * non-public address, so the address connected to is one that was checked. Undefined with `allow`.
   */
  get lookup(): CheckedLookup | undefined {
    if (this.privateNetworks === 'allow') return undefined;
    return (hostname, options, callback) => {
      dnsLookup(hostname, { ...options, all: true, verbatim: true }, (err, addresses) => {
        if (err) return callback(err, []);
        const list = addresses as LookupAddress[];
        if (!list.length || list.some((a) => !isPublic(a.address))) {
          return callback(Object.assign(new UrlRefused(refusedName(hostname)), { code: 'EREFUSED_PRIVATE' }), []);
        }
        if ((options as LookupAllOptions).all) return callback(null, list);
        callback(null, list[0].address, list[0].family);
      });
    };
  }
}

export class UrlRefused extends Error {
  override readonly name = 'UrlRefused';
}

/** Everything may be called (tests of single parts, the operator's own targets). */
export const ALLOW_ALL = new UrlPolicy('allow');

function refusedName(host: string): string {
  return `${host} resolves to a non-public address, ${REFUSED}`;
}

function hostOf(url: string): string {
  const h = new URL(url).hostname.toLowerCase();
  return h.startsWith('[') && h.endsWith(']') ? h.slice(1, -1) : h;
}

function isPublic(address: string): boolean {
  try {
    return ipaddr.process(address).range() === 'unicast';
  } catch {
    return false;
  }
}
