import { lookup } from 'node:dns/promises';
import ipaddr from 'ipaddr.js';

/**
 * Where URLs that people (not the operator) configure may point: automations' webhook actions,
 * homes' notification channels, Web Push endpoints. With `deny`, an address that is not public
 * unicast (loopback, private, link-local such as 169.254.169.254, unique-local, multicast, …) is
 * refused: named literally when the URL is saved, and after resolving the host name before every
 * request, whose redirects are not followed then. (A name that resolves differently between the
 * check and the connection is not caught; a network policy in front of the nodes closes that.)
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
    if (host === 'localhost' || host.endsWith('.localhost')) return `points at ${host}, which this installation does not call (HEARTH_OUTBOUND_PRIVATE_NETWORKS=deny)`;
    if (ipaddr.isValid(host) && !isPublic(host)) return `points at ${host}, a non-public address, which this installation does not call (HEARTH_OUTBOUND_PRIVATE_NETWORKS=deny)`;
    return undefined;
  }

  /** Before a request: throws when the host is, or resolves to, a non-public address. */
  async check(url: string): Promise<void> {
    if (this.privateNetworks === 'allow') return;
    const saved = this.problem(url);
    if (saved) throw new UrlRefused(saved);
    const host = hostOf(url);
    if (ipaddr.isValid(host)) return;
    const addresses = await lookup(host, { all: true, verbatim: true });
    const bad = addresses.find((a) => !isPublic(a.address));
    if (bad) throw new UrlRefused(`${host} resolves to ${bad.address}, a non-public address, which this installation does not call (HEARTH_OUTBOUND_PRIVATE_NETWORKS=deny)`);
  }
}

export class UrlRefused extends Error {
  override readonly name = 'UrlRefused';
}

/** Everything may be called (tests of single parts, the operator's own targets). */
export const ALLOW_ALL = new UrlPolicy('allow');

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
