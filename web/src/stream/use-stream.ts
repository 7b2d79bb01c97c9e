import { useEffect, useRef, useState } from 'react';
import { accessToken, refreshSession } from '../api/client';

/** One event of the live stream (docs/api.md, "The live stream"). */
export interface StreamEvent {
  id: string;
  type: string;
  deviceId: string | null;
  homeId: string | null;
  at: string;
  data: Record<string, unknown>;
}

export interface StreamFilter {
  deviceId?: string;
  homeId?: string;
  types?: string[];
}

export type StreamState = 'connecting' | 'live' | 'closed';

/**
 * Keeps a WebSocket to /api/v1/stream open while the component lives and hands every event to
 * `onEvent`. It resumes after a drop with the last event id (nothing is lost), refreshing the
 * access token first when the stream ended because the token expired.
 */
export function useStream(filter: StreamFilter, onEvent: (e: StreamEvent) => void, enabled = true): StreamState {
  const [state, setState] = useState<StreamState>('connecting');
  const handler = useRef(onEvent);
  handler.current = onEvent;
  const key = JSON.stringify(filter);

  useEffect(() => {
    if (!enabled) return;
    const f = JSON.parse(key) as StreamFilter;
    let ws: WebSocket | undefined;
    let stopped = false;
    let lastId: string | undefined;
    let retry: ReturnType<typeof setTimeout> | undefined;
    let delay = 500;

    const open = async () => {
      const token = await accessToken();
      if (stopped || !token) return;
      const q = new URLSearchParams({ access_token: token });
      if (f.deviceId) q.set('deviceId', f.deviceId);
      if (f.homeId) q.set('homeId', f.homeId);
      if (f.types?.length) q.set('types', f.types.join(','));
      if (lastId) q.set('lastEventId', lastId);
      const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
      setState('connecting');
      ws = new WebSocket(`${proto}//${location.host}/api/v1/stream?${q}`);
      ws.onmessage = (m) => {
        let e: StreamEvent;
        try {
          e = JSON.parse(String(m.data)) as StreamEvent;
        } catch {
          return;
        }
        if (e.type === 'hello') {
          delay = 500;
          setState('live');
        }
        if (e.type === 'end' && e.data.reason === 'token-expired') void refreshSession();
        if (e.id && e.type !== 'hello' && e.type !== 'end') lastId = e.id;
        handler.current(e);
      };
      ws.onclose = () => {
        if (stopped) return;
        setState('closed');
        retry = setTimeout(() => void open(), delay);
        delay = Math.min(delay * 2, 15_000);
      };
    };
    void open();
    return () => {
      stopped = true;
      if (retry) clearTimeout(retry);
      ws?.close();
    };
  }, [key, enabled]);

  return state;
}
