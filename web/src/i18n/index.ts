import dayjs from 'dayjs';
import 'dayjs/locale/zh-cn';
import i18next from 'i18next';
import { initReactI18next } from 'react-i18next';
import { en } from './en';
import { zhCN } from './zh-CN';

/** The languages of the console, in the order the switch shows them. */
export const LANGUAGES = [
  { code: 'en', label: 'English' },
  { code: 'zh-CN', label: '中文' },
] as const;
export type Language = (typeof LANGUAGES)[number]['code'];

const KEY = 'hearth.lang';

/** The language remembered for this user (or this browser before sign-in), else the browser's. */
export function rememberedLanguage(userId?: string): Language {
  const saved = (userId && localStorage.getItem(`${KEY}.${userId}`)) || localStorage.getItem(KEY);
  if (saved === 'en' || saved === 'zh-CN') return saved;
  return navigator.language.toLowerCase().startsWith('zh') ? 'zh-CN' : 'en';
}

/** Switches the language and remembers it for this user (and as this browser's default). */
export function setLanguage(lng: Language, userId?: string): void {
  localStorage.setItem(KEY, lng);
  if (userId) localStorage.setItem(`${KEY}.${userId}`, lng);
  void i18next.changeLanguage(lng);
}

void i18next.use(initReactI18next).init({
  resources: { en: { translation: en }, 'zh-CN': { translation: zhCN } },
  lng: rememberedLanguage(),
  fallbackLng: 'en',
  interpolation: { escapeValue: false },
  returnNull: false,
});

// Ant Design's date pickers name months and weekdays through dayjs.
const dayjsLocale = (lng: string) => (lng === 'zh-CN' ? 'zh-cn' : 'en');
i18next.on('languageChanged', (lng) => {
  document.documentElement.lang = lng;
  dayjs.locale(dayjsLocale(lng));
});
document.documentElement.lang = i18next.language;
dayjs.locale(dayjsLocale(i18next.language));

export default i18next;
