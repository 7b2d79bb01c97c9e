import {
  ApiOutlined,
  AppstoreOutlined,
  AuditOutlined,
  CloudUploadOutlined,
  ClusterOutlined,
  DashboardOutlined,
  HomeOutlined,
  KeyOutlined,
  PlusCircleOutlined,
  ShareAltOutlined,
  TeamOutlined,
  ThunderboltOutlined,
} from '@ant-design/icons';
import { lazy, type ComponentType, type ReactNode } from 'react';

/**
 * Every page of the console: its route, its place in the menu and its code, loaded when first
 * opened (each page is its own chunk). A new page (OTA, fleet search, …) is one entry here and
 * one folder under pages/, with its strings in i18n/en.ts and zh-CN.ts.
 */
export interface PageEntry {
  path: string;
  component: ComponentType;
  /** Menu entry: its i18n key and icon; pages without one (a device's page) are reached by links. */
  menu?: { label: string; icon: ReactNode };
  /** Only the operator sees it in the menu (the API refuses others anyway). */
  operator?: boolean;
}

export const PAGES: PageEntry[] = [
  { path: '/', component: lazy(() => import('./overview/overview-page')), menu: { label: 'nav.overview', icon: <DashboardOutlined /> } },
  { path: '/devices', component: lazy(() => import('./devices/devices-page')), menu: { label: 'nav.devices', icon: <ApiOutlined /> } },
  { path: '/devices/:id', component: lazy(() => import('./devices/device-page')) },
  {
    path: '/onboarding',
    component: lazy(() => import('./onboarding/onboarding-page')),
    menu: { label: 'nav.onboarding', icon: <PlusCircleOutlined /> },
    operator: true,
  },
  { path: '/products', component: lazy(() => import('./products/products-page')), menu: { label: 'nav.products', icon: <AppstoreOutlined /> } },
  { path: '/homes', component: lazy(() => import('./homes/homes-page')), menu: { label: 'nav.homes', icon: <HomeOutlined /> } },
  { path: '/automations', component: lazy(() => import('./automations/automations-page')), menu: { label: 'nav.automations', icon: <ThunderboltOutlined /> } },
  { path: '/gateway', component: lazy(() => import('./gateway/gateway-page')), menu: { label: 'nav.gateway', icon: <ShareAltOutlined /> }, operator: true },
  { path: '/fleet', component: lazy(() => import('./fleet/fleet-page')), menu: { label: 'nav.fleet', icon: <ClusterOutlined /> }, operator: true },
  { path: '/ota', component: lazy(() => import('./ota/ota-page')), menu: { label: 'nav.ota', icon: <CloudUploadOutlined /> }, operator: true },
  { path: '/audit', component: lazy(() => import('./audit/audit-page')), menu: { label: 'nav.audit', icon: <AuditOutlined /> }, operator: true },
  { path: '/users', component: lazy(() => import('./users/users-page')), menu: { label: 'nav.users', icon: <TeamOutlined /> }, operator: true },
  { path: '/keys', component: lazy(() => import('./keys/keys-page')), menu: { label: 'nav.keys', icon: <KeyOutlined /> } },
];
