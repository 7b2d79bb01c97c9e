import AjvCompiler from '@fastify/ajv-compiler';
import SerializerSelector from '@fastify/fast-json-stringify-compiler';

/**
 * Fastify's own schema compilers (Ajv for requests, fast-json-stringify for responses), each
 * route's code compiled at its first use instead of at start. Compiling all of some 250 routes'
 * schemas took about two thirds of a second of every start and held code for routes a node may
 * never serve; the first request of a route now pays its few milliseconds instead. A schema that
 * does not compile fails that route's requests with a 500 instead of the start: the route sweeps of
 * test/authz.test.ts and test/security/http-routes.test.ts walk the OpenAPI document and call its routes.
 */
export function lazySchemaCompilers() {
  const validators = AjvCompiler();
  const serializers = SerializerSelector();
  return {
    buildValidator(...args: Parameters<typeof validators>) {
      const compile = validators(...args);
      return (route: Parameters<typeof compile>[0]) => {
        let fn: ReturnType<typeof compile> | undefined;
        // Fastify reads `errors` off the function it was given after a failed validation.
        const validate = (data: unknown) => {
          fn ??= compile(route);
          const result = fn(data);
          validate.errors = fn.errors;
          return result;
        };
        validate.errors = undefined as ReturnType<typeof compile>['errors'];
        return validate as unknown as ReturnType<typeof compile>;
      };
    },
    buildSerializer(...args: Parameters<typeof serializers>) {
      const compile = serializers(...args);
      return (route: Parameters<typeof compile>[0]) => {
        let fn: ReturnType<typeof compile> | undefined;
        return (data: unknown) => {
          fn ??= compile(route);
          return fn(data);
        };
      };
    },
  };
}
